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
debian_docs.jsonl.xz has no recipe here: its HTML extraction was not scripted (docs/data.md lists its packages).
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

PUBLISHED = {'techdocs': ('6f8f59cf4c0c21fa946350eb467c8e5878a726b30ac5a70e5696d4d54d437221',
                          {'perl-doc': '5.36.0-7+deb12u4', 'git-doc': '1:2.39.5-0+deb12u3'})}
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

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.corpora', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument('corpus', choices=sorted(PUBLISHED))
    p.add_argument('--out', required=True, help='the .jsonl to write (never over an existing file)')
    p.add_argument('--debs', help='a folder holding the .deb files (default: apt-get download them into a temp folder)')
    a = p.parse_args(argv)
    if os.path.lexists(a.out):
        sys.exit(f"error: {a.out} exists; move it away or pass another --out")
    for tool in ('dpkg-deb', 'pod2text') + (() if a.debs else ('apt-get',)):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} not found: the recipe needs Debian's dpkg, perl (pod2text) and apt")
    with tempfile.TemporaryDirectory() as work:
        debs = a.debs or os.path.join(work, 'debs')
        if not a.debs:
            os.makedirs(debs)
            run(['apt-get', 'download', 'perl-doc', 'git-doc'], cwd=debs)
        rows, versions = techdocs(debs, os.path.join(work, 'root'))
    data = ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows).encode()
    from engramlib.fsafe import atomic_write
    atomic_write(a.out, lambda f: f.write(data))
    sha, want_versions = PUBLISHED[a.corpus]
    got = hashlib.sha256(data).hexdigest()
    print(f"{a.out}: {len(rows)} documents, {len(data):,} bytes, sha256 {got}")
    if got == sha:
        print("identical to the published file")
    else:
        other = {k: v for k, v in versions.items() if v != want_versions[k]}
        print(f"differs from the published {sha}" + (f": built from {other}, the published file from "
              f"{ {k: want_versions[k] for k in other} } (the versions are written into every 'source' field)" if other else ''))

if __name__ == '__main__':
    main()
