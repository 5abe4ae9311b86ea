"""
Writing files on a shared machine: nothing the repo writes follows a link planted at its name, a file
appears only when complete, and a directory has one writer at a time.

  atomic_write     temp file with an unpredictable name (exclusive create), fsync, rename over the name:
                   a crash leaves the old file or the new one, and a link at the name is replaced, not followed
  append_line      an append that refuses a link (metrics.jsonl)
  DirLock          one writer per run dir or data dir (flock on a no-follow lock file)
  remove_stale_temps   the temp files of writes killed mid-way (only while holding the dir's lock; bounded depth)
  regular_file     what the repo reads is a regular file (a FIFO at a name would block the read forever)
  refuse_shared_dir    an output dir is the program's own: not /, home, the repo root, or (a run) a data dir
"""
import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time

UMASK = os.umask(0o022)
os.umask(UMASK)                      # read the process umask (the call sets it; put it back)
TEMP_PREFIX, TEMP_SUFFIX = '.', '.tmp'   # every temp file this repo makes: .<name>.<random>.tmp

class DataError(Exception):
    """Bad or mismatched input; the message says what is wrong and how to fix it (engramlib/data.py re-exports it)."""

class UnsafePath(DataError):
    """A name the repo writes is taken by a link or something that is not a plain file."""

def regular_file(path, what):
    """path, once it is a regular file (links to one are fine): a FIFO would block the open forever, a device or a
    directory read as data is never what the user meant."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist.") from None
    if not stat.S_ISREG(st.st_mode):
        kind = 'a directory' if stat.S_ISDIR(st.st_mode) else 'a FIFO' if stat.S_ISFIFO(st.st_mode) else 'not a regular file'
        raise DataError(f"{what} {path} is {kind}; give a regular file.")
    return path

def refuse_link(path, what='write'):
    if os.path.islink(path):
        raise UnsafePath(f"{path} is a symbolic link; refusing to {what} through it (it could point at any file). "
                         f"Remove the link and re-run.")

def atomic_write(path, write_fn, mode='wb', check=None):
    """write_fn(file) writes the content; the file appears at `path` only when complete (and, with
    check, only once check(temp path) has read it back without raising)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=TEMP_PREFIX + os.path.basename(path) + '.', suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)        # mkstemp makes 0600; give the file what open() would
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)                # a link at `path` is replaced itself: its target is never touched
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY)   # make the rename itself durable
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

def own_subdir(parent, *names):
    """parent/names... as directories this program writes into (a run's snapshots/, a data dir's hot/n<N>/, a
    report's default eval/): each made if absent, and a link planted at any of them refused, so nothing is written
    into the link's target. A link at parent or above (out/ on a bigger disk) is the user's and is followed."""
    d = parent
    for name in names:
        d = os.path.join(d, name)
        refuse_link(d, 'write into')
        os.makedirs(d, exist_ok=True)
    return d

def private_temp_dir(d):
    """A fresh 0700 dir inside d for tools that write by name (bbhash, DuckDB): nobody else can plant
    a link in it. The caller removes it."""
    os.makedirs(d, exist_ok=True)
    return tempfile.mkdtemp(dir=d, prefix=TEMP_PREFIX + 'work.', suffix=TEMP_SUFFIX)

def finite_or_none(obj):
    """NaN and inf are not JSON (strict readers choke on them): they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj

def save_json(path, obj):
    text = json.dumps(finite_or_none(obj), indent=2, sort_keys=True, allow_nan=False) + '\n'
    atomic_write(path, lambda f: f.write(text), mode='w')

def open_no_follow(path, flags, what):
    """os.open that refuses a link at `path` and anything but a regular file with one name."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666 & ~UMASK)
    except OSError as e:
        if e.errno == 40:                    # ELOOP: the last component is a symbolic link
            refuse_link(path, what)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UnsafePath(f"{path} is not a plain file of its own (a hard link or a special file); refusing to "
                         f"{what} it. Remove it and re-run.")
    return fd

def append_line(path, line, write=os.write):
    """Append one line whole and make it durable, or leave the file as it was and raise; a link at `path` is refused.
    A write may take fewer bytes than asked (a disk full for a moment): the rest is written until done; if a write
    fails part way, the file is cut back to its length before, so no half row is ever glued to the next."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 'append to')
    try:
        start, data = os.lseek(fd, 0, os.SEEK_END), memoryview(line.encode())
        try:
            while data:
                n = write(fd, data)
                if n <= 0:
                    raise OSError(errno.ENOSPC, f"no byte of the rest of a line could be written to {path}")
                data = data[n:]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)

def remove_stale_temps(d, owned):
    r"""Temp files (and private work dirs) left by this program's writes that were killed, and only those: `owned`
    maps each dir it writes into (relative to d: '' for d itself, 'snapshots', r'hot/n\d+') to a regex of the names
    it writes there; the temp of name N is .N.<random>.tmp (atomic_write, private_temp_dir). A user's
    own .notes.tmp, a temp of another name, and anything in other dirs or below stay, and so does a subdir another
    process owns (one with its own .lock: a run dir inside this one). Only call it while holding d's lock: then no
    live writer owns them."""
    removed = 0
    for rel, names in owned.items():
        for sub in ([d] if rel == '' else [os.path.join(d, r) for r in matching_dirs(d, rel)]):
            if sub != d and (os.path.islink(sub) or os.path.lexists(os.path.join(sub, '.lock'))):
                continue
            for name in os.listdir(sub):
                m = re.fullmatch(r'\.(.+)\.\w+' + re.escape(TEMP_SUFFIX), name)
                if m and re.fullmatch(names, m.group(1)):
                    p = os.path.join(sub, name)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
                    removed += 1
    return removed

def matching_dirs(d, rel):
    """The subdirs of d (relative paths, one level per '/' of rel) whose path matches the regex rel."""
    found = ['']
    for part in rel.split('/'):
        found = [os.path.join(f, n) for f in found if os.path.isdir(os.path.join(d, f)) for n in sorted(os.listdir(os.path.join(d, f)))
                 if re.fullmatch(part, n) and os.path.isdir(os.path.join(d, f, n))]
    return found

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def is_data_dir(d):
    return os.path.isfile(os.path.join(d, 'meta.json')) and os.path.isfile(os.path.join(d, 'train.bin'))

def refuse_shared_dir(d, flag, data_dirs_too=False):
    """An output dir must be the program's own: never /, the home dir or the repo's root (clearing a run's files and
    the temps of killed writes there would reach into everything below), and for a run never a data dir or a dir
    inside one (a later prepare --overwrite replaces the data dir with everything in it)."""
    real = os.path.realpath(d)
    if real in {'/', os.path.realpath(os.path.expanduser('~')), os.path.realpath(REPO)}:
        raise DataError(f"{flag} {d} is {real}, a directory shared with everything below it; give the run a directory "
                        f"of its own, e.g. {flag}=out/<name>.")
    p = real
    while data_dirs_too:                       # the dir and each of its parents (as many as the path has)
        if is_data_dir(p):
            raise DataError(f"{flag} {d} is {'the' if p == real else 'inside the'} data dir {p}; a run there would be "
                            f"deleted with the data dir by prepare_fineweb.py --overwrite. Use e.g. {flag}=out/<name>.")
        if os.path.dirname(p) == p:
            break
        p = os.path.dirname(p)

class DirLock:
    """One writer per directory: an exclusive flock on d/.lock, held for the life of the process (the
    kernel drops it when the process dies, even by kill -9, so a stale lock cannot block a resume).
    The file names the holder for the message the second writer gets."""

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.path = os.path.join(d, '.lock')
        self.fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT, 'lock')
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise DataError(f"{d} is in use by another run ({lock_holder(d)}). Wait for it to finish, "
                        f"stop it, or use another directory.") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                      'started': time.strftime('%Y-%m-%d %H:%M:%S')}).encode())

    def release(self):
        os.close(self.fd)                    # closing the file drops the flock

def lock_holder(d):
    """Who holds d's lock ('pid N on host H since T'), or None when no live process holds it."""
    path = os.path.join(d, '.lock')
    if not os.path.exists(path) or os.path.islink(path):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None                                  # nobody holds it (a dead holder's lock is released)
    except BlockingIOError:
        try:
            h = json.loads(os.pread(fd, 4096, 0) or b'{}')
        except ValueError:
            h = {}
        return f"pid {h.get('pid', '?')} on host {h.get('host', '?')} since {h.get('started', '?')}"
    finally:
        os.close(fd)
