"""
The replicas' corpora rebuilt from sources a user can reach (docs/data.md, "Where the corpora come from").

  python -m tools.corpora techdocs --out techdocs.jsonl               # apt-get download perl-doc git-doc, then render
  python -m tools.corpora techdocs --debs DIR --out techdocs.jsonl    # the two .deb files already in DIR

techdocs.jsonl (the CPU replica's corpus; half of the GPU replica's): one JSON line {"text", "source"} per document,
UTF-8 as is: the 206 .pod pages of Debian 12's perl-doc, each rendered by `pod2text --utf8` and stripped, then the
292 .txt manuals of git-doc (AsciiDoc sources as shipped, stripped) listed twice, as the walk that made it met them
through /usr/share/doc/git/html -> ../git-doc (exact duplicates: tools/replica_corpus.py drops them). With perl-doc
5.36.0-7+deb12u4 and git-doc 1:2.39.5-0+deb12u3 it is byte-identical to the published file (sha256 below); another
perl-doc build of 5.36.0-7 renders the same texts, and only its version in the "source" fields differs.

  python -m tools.corpora debian_docs --out debian_docs.jsonl.xz [--compare PUBLISHED]   # 17 packages, ~100 MB

debian_docs.jsonl.xz (the other half of the GPU replica's corpus): the same 11,650 documents as the published file, in
its order (tools/debian_docs.sources.xz lists them: which files it took was not scripted, so the recipe takes its
list), each made text by tools/doctext.py. That extraction was rewritten after the fact: it is not byte-identical
(docs/data.md gives, package by package, how many documents come out identical and the characters either way; run
--compare with the published file to measure it again).
"""
import argparse
import glob
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from tools import one_line

PUBLISHED = {'techdocs': ('6f8f59cf4c0c21fa946350eb467c8e5878a726b30ac5a70e5696d4d54d437221',
                          {'perl-doc': '5.36.0-7+deb12u4', 'git-doc': '1:2.39.5-0+deb12u3'})}
# debian_docs: the published file's packages at the versions it was built from; its sha256 unpacked (the .xz's
# bytes depend on the compressor's settings too)
PUBLISHED['debian_docs'] = ('dbc7c58fccb6066054a3c6b6b89e19640b691aa3f89922aaa3209ad36e5d9b59', {
    'debian-reference-en': '2.100', 'debian-handbook': '11.20220922', 'developers-reference': '12.18',
    'debian-policy': '4.6.2.0', 'apache2-doc': '2.4.68-1~deb12u1', 'sqlite3-doc': '3.40.1-2+deb12u2',
    'cmake-doc': '3.25.1-1', 'bash-doc': '5.2.15-2', 'coreutils': '9.1-1', 'manpages': '6.03-2',
    'tcl8.6-doc': '8.6.13+dfsg-2', 'gnome-user-docs': '43.0-2', 'golang-1.19-doc': '1.19.8-2',
    'rust-doc': '1.63.0+dfsg1-2', 'cargo-doc': '0.66.0+ds1-1', 'openjdk-17-doc': '17.0.19+10-1~deb12u2',
    'ruby3.1-doc': '3.1.7+really3.1.2-0+deb12u1'})
SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'debian_docs.sources.xz')
PODS = 'usr/share/perl/5.36.0/pod'
GIT_DOCS = 'usr/share/doc/git-doc'

def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, **kw)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:3])} ... failed: {p.stderr.decode(errors='replace').strip()[-500:]}")
    return p.stdout

def deb(debs, package):
    """(path, version) of the one <package>_<version>_all.deb in debs (apt-get download names it so, the epoch's
    ':' written %3a)."""
    found = sorted(glob.glob(os.path.join(debs, f'{package}_*.deb')))
    if len(found) != 1:
        sys.exit(f"error: {debs} holds {len(found)} {package}_*.deb files, not 1: `apt-get download {package}` there")
    return found[0], urllib.parse.unquote(os.path.basename(found[0]).split('_')[1])

def download(debs, pinned):
    """apt-get download each package at its pinned version, or at the archive's own when that one is gone."""
    for package, version in pinned.items():
        if subprocess.run(['apt-get', 'download', f'{package}={version}'], cwd=debs, capture_output=True).returncode:
            print(f"note: {package} {version} is not in the archive; downloading its current version")
            run(['apt-get', 'download', package], cwd=debs)

def unpack(debs, packages, work):
    """{package: (its root, its version)}: each package's .deb unpacked into a folder of its own."""
    out = {}
    for package in packages:
        path, version = deb(debs, package)
        os.makedirs(os.path.join(work, package))
        run(['dpkg-deb', '-x', path, os.path.join(work, package)])
        out[package] = os.path.join(work, package), version
    return out

def debian_docs(debs, work, sources):
    """The documents `sources` lists (<package>/<path>, in order) from the packages in debs; also the versions used."""
    from tools.doctext import file_text, ri_texts
    with lzma.open(sources, 'rt', encoding='utf-8') as f:
        listed = [line.rstrip('\n').split('/', 1) for line in f if line.strip()]
    roots = unpack(debs, dict.fromkeys(package for package, _ in listed), work)
    ri = {}                             # ri's pages: every class of a package's ri folder in one call
    for package, path in listed:
        if '/share/ri/' in path:
            ri.setdefault(package, []).append(path)
    pages = {}
    if ri and not shutil.which('ri'):
        sys.exit("error: ri not found: the list takes Ruby's ri pages, which ri renders (Debian: apt-get install ruby)")
    for package, paths in ri.items():
        top = os.path.join(roots[package][0], paths[0].split('/system/')[0], 'system')
        names = [p.split('/system/', 1)[1].replace('/', '::') for p in paths]
        texts = ri_texts(top, names)
        pages.update({(package, p): texts.get(n, '') for p, n in zip(paths, names)})
    def text(doc):
        return pages[doc] if doc in pages else file_text(os.path.join(roots[doc[0]][0], doc[1]))
    with ThreadPoolExecutor(os.cpu_count()) as pool:         # man pages: a process each, the GIL released meanwhile
        texts = list(tqdm(pool.map(text, map(tuple, listed)), total=len(listed), desc='documents', unit='doc'))
    rows = [{'text': t, 'source': f'{package}/{path}'} for t, (package, path) in zip(texts, listed)]
    return rows, {package: version for package, (_, version) in roots.items()}

def published_texts(path):
    """{source: text} of a published corpus file (.jsonl, or .jsonl.xz)."""
    opener = lzma.open if path.endswith('.xz') else open
    try:
        with opener(path, 'rt', encoding='utf-8') as f:
            return {r['source']: r['text'] for r in map(json.loads, f)}
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: --compare {path} is not a corpus of {{\"text\", \"source\"}} JSON lines ({e})")

def compare(rows, theirs):
    """Package by package: documents identical to the published file's (theirs: published_texts), and characters
    rebuilt / published."""
    stats = {}
    for r in rows:
        s = stats.setdefault(r['source'].split('/')[0], [0, 0, 0, 0])
        other = theirs.get(r['source'], '')
        s[0] += r['text'] == other
        s[1] += 1
        s[2] += len(r['text'])
        s[3] += len(other)
    print(f"{'package':<22} {'identical':>11} {'characters rebuilt':>19} {'published':>12}")
    for package, (same, n, ours, pub) in stats.items():
        print(f"{package:<22} {same:>5} / {n:<5} {ours:>19,} {pub:>12,}")
    same, n, ours, pub = map(sum, zip(*stats.values()))
    print(f"{'all':<22} {same:>5} / {n:<5} {ours:>19,} {pub:>12,}")

def techdocs(debs, work):
    """The documents of techdocs.jsonl from the perl-doc and git-doc packages in debs; also the versions used."""
    versions, rows = {}, []
    for package in ('perl-doc', 'git-doc'):
        path, versions[package] = deb(debs, package)
        run(['dpkg-deb', '-x', path, work])
    for pod in sorted(glob.glob(os.path.join(work, PODS, '*.pod'))):
        text = run(['pod2text', '--utf8', pod]).decode('utf-8').strip()
        rows.append({'text': text, 'source': f"perl-doc {versions['perl-doc']}: {os.path.basename(pod)} (pod2text)"})
    root = os.path.join(work, GIT_DOCS)
    manuals = sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, '**', '*.txt'), recursive=True))
    for prefix in ('../git-doc/', 'html/'):
        for m in manuals:
            with open(os.path.join(root, m), encoding='utf-8') as f:
                rows.append({'text': f.read().strip(), 'source': f"git-doc {versions['git-doc']}: {prefix}{m}"})
    return rows, versions

def build(corpus, debs, work, sources):
    """(rows, versions): the corpus's documents from the .deb files in debs (downloaded there when debs is None)."""
    if debs is None:
        debs = os.path.join(work, 'debs')
        os.makedirs(debs)
        if corpus == 'techdocs':
            run(['apt-get', 'download', 'perl-doc', 'git-doc'], cwd=debs)
        else:
            download(debs, PUBLISHED[corpus][1])
    root = os.path.join(work, 'root')
    return techdocs(debs, root) if corpus == 'techdocs' else debian_docs(debs, root, sources)

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.corpora', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('corpus', choices=sorted(PUBLISHED))
    p.add_argument('--out', required=True, help='the .jsonl to write, xz-compressed if it ends in .xz (never over an existing file)')
    p.add_argument('--debs', help='a folder holding the .deb files (default: apt-get download them into a temp folder)')
    p.add_argument('--sources', default=SOURCES, help="debian_docs: the documents to take, one <package>/<path> a line "
                   "(.xz; default: the published file's)")
    p.add_argument('--compare', help='debian_docs: the published file; print, package by package, what came out identical')
    a = p.parse_args(argv)
    if os.path.lexists(a.out):
        sys.exit(f"error: {a.out} exists; move it away or pass another --out")
    for f in (a.sources, a.compare):
        if f and not os.path.isfile(f):
            sys.exit(f"error: {f} is not a file")
    theirs = published_texts(a.compare) if a.compare else None     # before the build: a bad file fails at once
    needs = ('dpkg-deb',) + (('pod2text',) if a.corpus == 'techdocs' else ('man',)) + (() if a.debs else ('apt-get',))
    for tool in needs:
        if not shutil.which(tool):
            sys.exit(f"error: {tool} not found: the {a.corpus} recipe needs {', '.join(needs)} "
                     f"(Debian: apt-get install dpkg man-db perl)")
    with tempfile.TemporaryDirectory() as work:
        rows, versions = build(a.corpus, a.debs, work, a.sources)
    data = ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows).encode()
    from engramlib.fsafe import atomic_write
    atomic_write(a.out, lambda f: f.write(lzma.compress(data) if a.out.endswith('.xz') else data))
    sha, want_versions = PUBLISHED[a.corpus]
    got = hashlib.sha256(data).hexdigest()
    print(f"{a.out}: {len(rows)} documents, {len(data):,} bytes{' unpacked' if a.out.endswith('.xz') else ''}, sha256 {got}")
    if got == sha:
        print("identical to the published file")
    else:
        other = {k: v for k, v in versions.items() if v != want_versions.get(k)}
        print(f"differs from the published {sha}" + (f": built from {other}, the published file from "
              f"{ {k: want_versions.get(k) for k in other} }" if other else '') +
              (" (the versions are written into every 'source' field)" if other and a.corpus == 'techdocs' else ''))
    if theirs is not None:
        compare(rows, theirs)

if __name__ == '__main__':
    sys.exit(one_line(main, sys.argv[1:]))      # Ctrl-C in a 3-minute build: one line
