"""
Documentation files as plain text, for tools/corpora.py's debian_docs recipe: HTML (and Mallard .page XML) without its
navigation, scripts and summary tables; man pages rendered by `man -l`; Ruby's ri files by `ri`; other files as
they are. One rule for every line of every kind: its indent kept, each run of blanks inside it one space, a run of
blank lines one blank line.
"""
import gzip
import os
import re
import subprocess
from html.parser import HTMLParser

BLOCK = {'address', 'article', 'aside', 'blockquote', 'body', 'caption', 'center', 'dd', 'details', 'div', 'dl', 'dt',
         'fieldset', 'figcaption', 'figure', 'form', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'legend', 'li',
         'main', 'ol', 'p', 'pre', 'section', 'summary', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul'}
SKIP = {'button', 'footer', 'head', 'nav', 'noscript', 'script', 'select', 'style', 'svg', 'template', 'title'}
SKIP_CLASS = {'bottomlang', 'footer', 'headerlink', 'nav', 'navfooter', 'navheader', 'navigation', 'permalink',
              'related', 'sidebar', 'skip-nav', 'sphinxsidebar', 'sub-nav', 'summary-table', 'toc', 'toctree-wrapper',
              'toplang', 'tooltip', 'top-nav'}      # Sphinx, DocBook, Javadoc, rustdoc and Apache's navigation
SKIP_ID = {'comments_section', 'footer', 'page-header', 'path', 'quickview'}
VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'param', 'source', 'track', 'wbr'}
MAN_INDENT = 7                  # man's body indent: a line keeps only what it has beyond it

def tidy_line(line):
    """A line's indent kept, each run of blanks inside it one space, none at its end."""
    return re.match(r'[ \t]*', line).group() + re.sub(r'\s+', ' ', line.strip())

def tidy(text):
    return re.sub(r'\n{3,}', '\n\n', '\n'.join(tidy_line(ln) for ln in text.split('\n'))).strip()


class _Text(HTMLParser):
    """Text by block: a block's text on one line (<br> breaks it), <pre> as laid out; blocks a blank line apart. Only
    the page's <main> (or role=main) when it has one."""

    def __init__(self, main_only):
        super().__init__(convert_charrefs=True)
        self.blocks, self.cur, self.open = [], [], []
        self.skip, self.pre, self.outside = 0, 0, int(main_only)

    def flush(self):
        t, self.cur = ''.join(self.cur), []
        if self.pre:
            t = '\n'.join(tidy_line(ln) for ln in t.strip('\n').split('\n'))
        else:
            t = '\n'.join(re.sub(r'\s+', ' ', ln).strip() for ln in t.split('\x00'))    # \x00: a <br>
        if t.strip():
            self.blocks.append(t.rstrip())

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            if tag == 'br' and not (self.skip or self.outside):
                self.cur.append('\n' if self.pre else '\x00')
            return
        a = dict(attrs)
        skip = tag in SKIP or bool(set((a.get('class') or '').split()) & SKIP_CLASS) or a.get('id') in SKIP_ID \
            or a.get('role') == 'navigation'
        main = bool(self.outside) and (tag == 'main' or a.get('role') == 'main')
        self.open.append((tag, skip, main))
        self.skip += skip
        self.outside -= main
        if tag in BLOCK and not self.skip:
            self.flush()
        self.pre += tag == 'pre'

    def handle_endtag(self, tag):
        if tag in VOID or all(t != tag for t, _, _ in self.open):
            return
        while self.open:                    # closes what was left open inside it too
            t, skip, main = self.open.pop()
            if t in BLOCK and not self.skip:
                self.flush()
            self.pre -= t == 'pre'
            self.skip -= skip
            self.outside += main
            if t == tag:
                break

    def handle_data(self, data):
        if not (self.skip or self.outside):
            self.cur.append(data)

def html_text(html):
    p = _Text(main_only=re.search(r'<main[\s>]|role=["\']?main', html) is not None)
    p.feed(html)
    p.close()
    p.flush()
    return '\n\n'.join(p.blocks)

def man_text(path):
    """`man -l` at a width that wraps nothing, without its header and footer lines; hyphens as '-'."""
    # 10000: wider, and grotty drops the footer's right-hand parts (then the last body line would go as the footer)
    env = {**os.environ, 'MANWIDTH': '10000', 'LC_ALL': 'C.UTF-8', 'MAN_KEEP_FORMATTING': ''}
    out = subprocess.run(['man', '-l', path], capture_output=True, env=env, check=True).stdout.decode('utf-8', 'replace')
    lines = out.rstrip('\n').split('\n')[1:-1]
    kept = []
    for ln in lines:
        indent = len(ln) - len(ln.lstrip(' '))
        body = re.sub(r'\s+', ' ', ln.strip()).replace('\u2010', '-')
        if re.fullmatch(r'[-=_]{4,}', body):            # a rule drawn with characters: a blank line
            body = ''
        kept.append(' ' * (indent - MAN_INDENT if indent >= MAN_INDENT else indent) + body if body else '')
    return tidy('\n'.join(kept))

def ri_texts(ri_dir, names):
    """{class or module name: `ri -f rdoc` of it} for every name, in one ri call (its "(from ...)" lines and rules
    dropped)."""
    out = subprocess.run(['ri', '--no-pager', '-f', 'rdoc', '-d', ri_dir, *names], capture_output=True, check=True,
                         env={**os.environ, 'LC_ALL': 'C.UTF-8'}).stdout.decode('utf-8', 'replace').split('\n')
    starts = [i for i in range(len(out) - 2) if out[i].startswith('= ') and out[i + 2].startswith('(from ')]
    texts = {}
    for i, j in zip(starts, starts[1:] + [len(out)]):
        name = out[i][2:].split(' < ')[0].strip()
        body = [ln for ln in out[i:j] if not ln.startswith('(from ') and not re.fullmatch(r'-{10,}', ln)]
        texts[name] = tidy('\n'.join(body))
    return texts

def file_text(path):
    """A file by its kind: HTML or .page; a man page (under man/, any .gz); or text as is (gunzipped)."""
    if re.search(r'/man/man\w+/', path):
        return man_text(path)
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt', encoding='utf-8', errors='replace') as f:
        text = f.read()
    if re.search(r'\.(x?html?|page)$', path):
        return tidy(html_text(text))
    return text.strip()
