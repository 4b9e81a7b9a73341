"""Encoded payloads and hidden text in prompts, turns and replies.

An instruction hidden from a reviewer's eye ("SWdub3JlIHByZXZpb3Vz…" = "Ignore previous…") still
reaches the model. A run only counts when it *decodes to readable text* (mostly printable, mostly
letters and spaces), so hashes, ids, long words and ``AAAA…`` padding are not reported.

Kinds: base64 (standard and URL-safe), hex (plain, ``\\x41`` and ``0x41`` forms), URL
percent-encoding, ``\\u0041`` escapes, rot13 (a segment that reads as English only after rot13),
and hidden Unicode: bidi controls, zero-width characters and Unicode *tag* characters (U+E0000
block, invisible "ASCII smuggling", decoded here to the ASCII they carry).
"""
from __future__ import annotations

import base64
import binascii
import codecs
import re
from urllib.parse import unquote

from .corpus import Corpus, Finding
from .text import preview

KIND = "encoded_payload"
HIDDEN_KIND = "hidden_text"
MAX_CHARS = 40_000  # per text scanned
EXAMPLES = 20

BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])(?:[A-Za-z0-9+/]{20,}={0,2}|[A-Za-z0-9_-]{20,}={0,2})(?![A-Za-z0-9+/=_-])")
HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){10,}(?![0-9A-Fa-f])")
HEX_ESCAPED = re.compile(r"(?:(?:\\x|0x)[0-9A-Fa-f]{2}[\s,]*){6,}")
PERCENT = re.compile(r"(?:[^\s%]*%[0-9A-Fa-f]{2}){4,}[^\s%]*")
UNICODE_ESCAPE = re.compile(r"(?:\\u[0-9A-Fa-f]{4}){4,}")
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
ZERO_WIDTH = re.compile("[\u200b-\u200d\u2060\ufeff\u180e]")
TAGS = re.compile("[\U000e0000-\U000e007f]+")
INSTRUCTION_WORDS = re.compile(r"\b(ignore|instructions?|system|prompt|password|secret|rules|approve|accept|"
                               r"jailbreak|override|admin|disregard|pretend|assistant)\b", re.I)
# The most frequent English words: a segment "reads as English" when a good share of its words are here.
COMMON = frozenset("""the be to of and a in that have i it for not on with he as you do at this but his by from they
we say her she or an will my one all would there their what so up out if about who get which go me when make can
like time no just him know take people into year your good some could them see other than then now look only come
its over think also back after use two how our work first well way even new want because any these give day most us
is are was were been has had did does said how why please tell show explain write ignore previous instructions rules
answer question help""".split())


def _readable(text: str, min_len: int = 8) -> bool:
    if len(text) < min_len:
        return False
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return printable >= 0.9 * len(text) and letters >= 0.6 * len(text) and " " in text.strip()


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _base64(run: str) -> str | None:
    if not (re.search(r"[a-z]", run) and re.search(r"[A-Z0-9]", run)):
        return None  # a plain long word or all-caps padding, not an encoding
    body = run.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            text = _utf8(decode(padded))
        except (binascii.Error, ValueError):
            continue
        if text and _readable(text):
            return text
    return None


def _hex(run: str) -> str | None:
    digits = re.sub(r"\\x|0x|[\s,]", "", run)
    try:
        text = _utf8(bytes.fromhex(digits))
    except ValueError:
        return None
    return text if text and _readable(text) else None


def _percent(run: str) -> str | None:
    text = unquote(run)
    return text if text != run and _readable(text) and run.count("%") >= 4 else None


def _unicode_escape(run: str) -> str | None:
    try:
        text = codecs.decode(run, "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return None
    return text if _readable(text, 4) else None


ROT13_WINDOW = 6
WORDS = re.compile(r"[A-Za-z]+")


def _rot13_spans(text: str) -> list[str]:
    """Runs of words that read as English only after rot13: in a window of ``ROT13_WINDOW`` words,
    at least half are common English words once decoded and none is one as written."""
    decoded = [w in COMMON for w in WORDS.findall(codecs.encode(text, "rot13").lower())]
    if sum(decoded) < ROT13_WINDOW // 2:
        return []  # the usual case: rot13 of ordinary text reads as nothing
    words = list(WORDS.finditer(text))
    plain = [w.group().lower() in COMMON for w in words]
    spans, start, end = [], None, -1
    for i in range(len(words) - ROT13_WINDOW + 1):
        window = slice(i, i + ROT13_WINDOW)
        if sum(decoded[window]) >= ROT13_WINDOW // 2 and not any(plain[window]):
            if start is None or i > end:
                if start is not None:
                    spans.append((start, end))
                start = i
            end = i + ROT13_WINDOW - 1
    if start is not None:
        spans.append((start, end))
    return [codecs.encode(text[words[a].start():words[b].end()], "rot13") for a, b in spans]


LONG_RUN = re.compile(r"[A-Za-z0-9+/_-]{20}")
# (pattern, kind, decoder, cheap test that must pass before the pattern runs at all)
PATTERNS = (
    (BASE64, "base64", _base64, LONG_RUN.search),
    (HEX, "hex", _hex, LONG_RUN.search),
    (HEX_ESCAPED, "hex", _hex, lambda t: "\\x" in t or "0x" in t),
    (PERCENT, "url", _percent, lambda t: "%" in t),
    (UNICODE_ESCAPE, "unicode_escape", _unicode_escape, lambda t: "\\u" in t),
)


def payloads(text: str) -> list[tuple[str, str]]:
    """(encoding, decoded text) for every encoded run in ``text``."""
    text = text[:MAX_CHARS]
    found = []
    for pattern, kind, decode, worth_it in PATTERNS:
        if not worth_it(text):
            continue
        for match in pattern.finditer(text):
            decoded = decode(match.group())
            if decoded:
                found.append((kind, decoded))
    for decoded in _rot13_spans(text):
        found.append(("rot13", decoded))
    return found


def hidden(text: str) -> list[tuple[str, str]]:
    """(kind, what it hides) for invisible characters in ``text``."""
    text = text[:MAX_CHARS]
    found = []
    for match in TAGS.finditer(text):
        found.append(("tag_characters", "".join(chr(ord(c) - 0xE0000) for c in match.group())))
    if BIDI.search(text):
        found.append(("bidi_controls", BIDI.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)))
    if ZERO_WIDTH.search(text):
        found.append(("zero_width", ZERO_WIDTH.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)))
    return found


def _texts(corpus: Corpus, i: int):
    yield "prompt", corpus.prompts[i]
    if corpus.contexts[i]:
        yield "turns", corpus.contexts[i]
    for reply in corpus.replies[i]:
        yield "reply", reply
    for chosen, rejected in corpus.pairs[i]:
        yield "reply", chosen
        yield "reply", rejected


def detect(corpus: Corpus) -> tuple[list[Finding], dict]:
    encoded: dict[str, list] = {}
    concealed: dict[str, list] = {}
    for i in range(len(corpus)):
        seen_enc, seen_hidden = set(), set()
        for where, text in _texts(corpus, i):
            for kind, decoded in payloads(text):
                if kind not in seen_enc:
                    seen_enc.add(kind)
                    encoded.setdefault(kind, []).append((i, where, decoded))
            for kind, decoded in hidden(text):
                if kind not in seen_hidden:
                    seen_hidden.add(kind)
                    concealed.setdefault(kind, []).append((i, where, decoded))
    findings = [_finding(KIND, kind, hits, corpus) for kind, hits in sorted(encoded.items())]
    findings += [_finding(HIDDEN_KIND, kind, hits, corpus) for kind, hits in sorted(concealed.items())]
    return findings, {"encoded_items": {k: len(v) for k, v in encoded.items()},
                      "hidden_items": {k: len(v) for k, v in concealed.items()}}


def _finding(kind: str, encoding: str, hits: list, corpus: Corpus) -> Finding:
    instructive = sum(bool(INSTRUCTION_WORDS.search(decoded)) for _, _, decoded in hits)
    items = sorted({i for i, _, _ in hits})
    label = encoding.replace("_", " ")
    what = "payload" if kind == KIND else "text"
    return Finding(
        kind=kind,
        title=f"{label} {what} in {len(items)} item{'s' if len(items) != 1 else ''}"
              + (f", {instructive} reading as instructions" if instructive else ""),
        # An encoded instruction is what an attacker hides; an encoded blob of data is merely odd.
        score=round(1.0 + 4.0 * instructive / len(hits), 2),
        items=items,
        evidence={"encoding": encoding, "items": len(items), "instruction_like": instructive,
                  "examples": [{"task_id": corpus.task_ids[i], "where": where, "decoded": preview(decoded)}
                               for i, where, decoded in hits[:EXAMPLES]]},
    )
