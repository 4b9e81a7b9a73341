import hashlib
import re
import sys

from annotations.exports.split import prompt_key, split_of, text_key

from .test_sql_json import nasty_texts


def test_whitespace_of_str_split_is_exactly_the_regex_whitespace():
    space = re.compile(r"\s+")
    assert [c for c in range(sys.maxunicode + 1) if bool(space.fullmatch(chr(c))) != chr(c).isspace()] == []


def test_text_key_is_the_normalised_prompt_hash():
    for text in [*nasty_texts(), "  HOW   do I\u00a0boil\u2028an egg? ", "\t\n"]:
        normal = re.sub(r"\s+", " ", text.lower()).strip()
        assert text_key(text) == hashlib.sha256(normal.encode()).hexdigest()
    assert prompt_key([{"role": "user", "content": "How  do I?"}]) == text_key("user: how do i?")


def test_split_is_a_deterministic_function_of_key_and_seed():
    keys = [text_key(str(i)) for i in range(2000)]
    sides = [split_of(k, 0.1) for k in keys]
    assert sides == [split_of(k, 0.1) for k in keys]
    assert 100 < sides.count("eval") < 300
    assert [split_of(k, 0.1, "other seed") for k in keys] != sides
    assert {split_of(k, 0) for k in keys} == {"train"}


def test_the_split_is_the_one_earlier_versions_made():
    """A snapshot rebuilt by this version puts every prompt on the side it was on before: the bucket is
    the first 12 hex digits of SHA-256(seed + key), as it always was."""
    import hashlib

    keys = [text_key(f"prompt {i}") for i in range(3000)]
    for fraction, seed in ((0.1, ""), (0.5, "s"), (0.02, "another seed")):
        before = ["eval" if int(hashlib.sha256((seed + k).encode()).hexdigest()[:12], 16) / float(1 << 48) < fraction
                  else "train" for k in keys]
        assert [split_of(k, fraction, seed) for k in keys] == before
