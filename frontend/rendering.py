"""Turning untrusted text into HTML: Markdown instructions through markdown-it-py and then nh3, and
plain task text escaped with invisible control characters made visible.

Two layers on purpose: markdown-it-py is configured not to pass raw HTML through and rejects
``javascript:`` links itself, and nh3 then keeps only an allow-list of tags and attributes, so a
bug or a future option in either one alone does not open the page.
"""
from __future__ import annotations

import difflib
import re
from urllib.parse import urlsplit

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th",
    "thead", "tr", "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align"},
}
LINK_SCHEMES = {"http", "https", "mailto"}
# Raster images only: an SVG document can carry script in some contexts, so it is not allowed even
# as data:.
DATA_IMAGE = re.compile(r"^data:image/(?:png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]+$", re.IGNORECASE)

# Characters that change how text reads without being seen: C0 controls, bidi overrides and
# isolates, marks, zero-width characters and the BOM. They are shown as ⟨U+XXXX⟩ markers, never passed through.
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"])


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def reveal_text(text: str) -> str:
    """Plain-text form with invisible characters replaced by visible ⟨U+XXXX⟩ markers."""
    return INVISIBLE.sub(lambda m: f"⟨{_codepoint(m.group())}⟩", text or "")


# Runs of text without a break opportunity longer than this get <wbr> break points: with some fonts
# Chromium's emergency line breaking of one huge "word" is quadratic (a 200,000-character run took
# over 20 s to lay out with DejaVu Sans); with break points it is instant.
LONG_RUN = re.compile(r"\S{81,}")
RUN_SLICE = 80


def _escape_with_break_points(text: str) -> str:
    out, pos = [], 0
    for match in LONG_RUN.finditer(text):
        out.append(escape(text[pos:match.start()]))
        run = match.group()
        out.append("<wbr>".join(escape(run[i:i + RUN_SLICE]) for i in range(0, len(run), RUN_SLICE)))
        pos = match.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def render_plain(text: str) -> SafeString:
    """Escape ``text`` for HTML, add break points to very long words and mark each invisible
    character with a visible, styled marker."""
    escaped = _escape_with_break_points(text or "")
    return mark_safe(INVISIBLE.sub(
        lambda m: f'<span class="cc" title="invisible character {_codepoint(m.group())}">'
                  f"⟨{_codepoint(m.group())}⟩</span>", escaped))


def _safe_link(value: str) -> bool:
    value = value.strip()
    if not value:
        return False
    scheme = urlsplit(value).scheme.lower()
    return scheme in LINK_SCHEMES


def _same_origin_path(value: str) -> bool:
    # "/static/x.png" is ours; "//host/x", "/\host" and anything with a scheme are not.
    return value.startswith("/") and not value.startswith(("//", "/\\")) and ":" not in value.split("?")[0]


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if tag == "a" and attr == "href":
        return value if _safe_link(value) else None
    if tag == "img" and attr == "src":
        return value if (DATA_IMAGE.match(value) or _same_origin_path(value)) else None
    return value


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes=LINK_SCHEMES | {"data"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(source: str) -> SafeString:
    """Markdown from an untrusted author to HTML that is safe to place in our pages."""
    html = _md.render(reveal_text(source or ""))
    return mark_safe(sanitize_html(html))


def line_diff(old: str, new: str) -> list[tuple[str, str]]:
    """Unified line diff as (kind, line) rows; kind is add, del, hunk or same."""
    rows = []
    diff = difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(), lineterm="", n=2)
    for line in diff:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            rows.append(("hunk", line))
        elif line.startswith("+"):
            rows.append(("add", line[1:]))
        elif line.startswith("-"):
            rows.append(("del", line[1:]))
        else:
            rows.append(("same", line[1:]))
    return rows
