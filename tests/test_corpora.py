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
