"""tools/corpora.py: the techdocs recipe (Debian's perl-doc and git-doc rendered as the published file was), run offline on
two small stand-in packages built here with dpkg-deb."""
import json
import shutil
import subprocess

import pytest

from conftest import run

def package(d, name, version, files):
    root = d / name
    (root / 'DEBIAN').mkdir(parents=True)
    (root / 'DEBIAN' / 'control').write_text(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                                              f"Maintainer: test <t@example.org>\nDescription: stand-in\n")
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    subprocess.run(['dpkg-deb', '--build', '--root-owner-group', str(root),
                    str(d / f"{name}_{version.replace(':', '%3a')}_all.deb")], check=True, capture_output=True)

@pytest.mark.skipif(not (shutil.which('dpkg-deb') and shutil.which('pod2text')), reason="needs Debian's dpkg-deb and perl")
def test_the_techdocs_recipe_renders_pods_then_lists_the_git_manuals_twice(tmp_path):
    debs = tmp_path / 'debs'
    debs.mkdir()
    package(debs, 'perl-doc', '5.36.0-7+deb12u9', {'usr/share/perl/5.36.0/pod/perlb.pod': "=head1 NAME\n\nperlb - B\n",
                                                   'usr/share/perl/5.36.0/pod/perla.pod': "=encoding utf8\n\n=head1 NAME\n\nperla - A é\n"})
    package(debs, 'git-doc', '1:2.39.5-0+deb12u3', {'usr/share/doc/git-doc/git-b.txt': "git-b(1)\n=====\n\n",
                                                    'usr/share/doc/git-doc/howto/a.txt': "How to a\n"})
    out = tmp_path / 'techdocs.jsonl'
    p = run(['-m', 'tools.corpora', 'techdocs', '--debs', str(debs), '--out', str(out)])
    rows = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    assert [r['source'] for r in rows] == [
        'perl-doc 5.36.0-7+deb12u9: perla.pod (pod2text)', 'perl-doc 5.36.0-7+deb12u9: perlb.pod (pod2text)',
        'git-doc 1:2.39.5-0+deb12u3: ../git-doc/git-b.txt', 'git-doc 1:2.39.5-0+deb12u3: ../git-doc/howto/a.txt',
        'git-doc 1:2.39.5-0+deb12u3: html/git-b.txt', 'git-doc 1:2.39.5-0+deb12u3: html/howto/a.txt']
    assert rows[0]['text'] == 'NAME\n    perla - A é' and rows[2]['text'] == 'git-b(1)\n=====' == rows[4]['text']
    assert 'é' in out.read_text(encoding='utf-8')                                # UTF-8 as is, as the published file
    assert "built from {'perl-doc': '5.36.0-7+deb12u9'}" in p.stdout and 'sha256' in p.stdout
    again = run(['-m', 'tools.corpora', 'techdocs', '--debs', str(debs), '--out', str(out)], check=False)
    assert again.returncode == 1 and again.stderr.startswith('error:') and 'exists' in again.stderr

PAGE = """<html><head><title>T</title><script>x()</script></head><body><nav>Home | Next</nav>
<div class="body" role="main"><h1>Title<a class="headerlink" href="#t">\u00b6</a></h1>
<p>One   line
wrapped.</p><pre>  code   here

    more</pre><ul><li>a</li><li>b<br>c</li></ul><div class="summary-table"><div>Class</div></div></div>
<footer>f</footer></body></html>"""
MAN = ".TH X 1\n.SH NAME\nx \\- does x\n.SH DESCRIPTION\nSome text\nwrapped.\n.TP\n.B \\-a\nflag a\n"

@pytest.mark.skipif(not (shutil.which('dpkg-deb') and shutil.which('man')), reason="needs Debian's dpkg-deb and man")
def test_the_debian_docs_recipe_takes_the_listed_documents_in_order_as_text(tmp_path):
    """Only the listed files, in the list's order: HTML without navigation, scripts, permalinks or summary tables
    (only its main part), <pre> as laid out; a man page rendered unwrapped; a .gz text as is. --compare counts what
    came out identical, package by package."""
    import gzip
    import lzma
    debs = tmp_path / 'debs'
    debs.mkdir()
    package(debs, 'standin-doc', '1.0-1', {'usr/share/doc/standin/index.html': PAGE, 'usr/share/doc/standin/other.html': PAGE})
    man = tmp_path / 'x.1.gz'
    man.write_bytes(gzip.compress(MAN.encode()))
    notes = tmp_path / 'NEWS.gz'
    notes.write_bytes(gzip.compress(b'  news\n\n'))
    package(debs, 'manpages-standin', '2', {})
    root = debs / 'manpages-standin'
    for path, src in (('usr/share/man/man1/x.1.gz', man), ('usr/share/doc/m/NEWS.gz', notes)):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / path)
    (debs / 'manpages-standin_2_all.deb').unlink()
    subprocess.run(['dpkg-deb', '--build', '--root-owner-group', str(root), str(debs / 'manpages-standin_2_all.deb')],
                   check=True, capture_output=True)
    listed = ['manpages-standin/usr/share/man/man1/x.1.gz', 'standin-doc/usr/share/doc/standin/index.html',
              'manpages-standin/usr/share/doc/m/NEWS.gz']
    sources = tmp_path / 'sources.xz'
    sources.write_bytes(lzma.compress(''.join(s + '\n' for s in listed).encode()))
    published = tmp_path / 'published.jsonl'
    published.write_text(json.dumps({'text': 'news', 'source': listed[2]}) + '\n')
    out = tmp_path / 'docs.jsonl.xz'
    p = run(['-m', 'tools.corpora', 'debian_docs', '--debs', str(debs), '--sources', str(sources), '--out', str(out),
             '--compare', str(published)])
    rows = [json.loads(line) for line in lzma.decompress(out.read_bytes()).decode().splitlines()]
    assert [r['source'] for r in rows] == listed
    assert rows[0]['text'] == 'NAME\nx - does x\n\nDESCRIPTION\nSome text wrapped.\n\n-a flag a'
    assert rows[1]['text'] == 'Title\n\nOne line wrapped.\n\n  code here\n\n    more\n\na\n\nb\nc'
    assert rows[2]['text'] == 'news'
    assert 'differs from the published' in p.stdout
    assert [line.split()[:4] for line in p.stdout.splitlines()[-3:]] == [
        ['manpages-standin', '1', '/', '2'], ['standin-doc', '0', '/', '1'], ['all', '1', '/', '3']]
