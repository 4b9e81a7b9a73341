from django import template

from frontend.rendering import render_markdown, render_plain, reveal_text

register = template.Library()


@register.filter
def plain(text):
    """Untrusted text, escaped, with invisible characters made visible. Use inside white-space: pre-wrap."""
    return render_plain("" if text is None else str(text))


@register.filter
def markdown(text):
    """Untrusted Markdown rendered and sanitised (see frontend.rendering)."""
    return render_markdown("" if text is None else str(text))


@register.filter
def seconds(ms):
    if ms is None:
        return "–"
    s = int(ms) // 1000
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


@register.filter
def visible(text):
    """Untrusted text for places that cannot hold markup (<title>, attributes): invisible
    characters become ⟨U+XXXX⟩ text; autoescaping still applies."""
    return reveal_text("" if text is None else str(text))
