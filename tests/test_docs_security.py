"""docs/security.md names, for each threat, the tests that hold it. A renamed, moved or deleted test
would leave the table promising a defence nothing checks: every test it names must exist, in the
file the row points at.

How a row names a test: ``path/test_x.py::test_name``; ``path/test_x.py`` followed by bare names
(each in that file, until the next file); or bare names under a table whose header names the file
(``tests (`tests/integration/test_faults.py`, …)``). A bare name before any file must exist
somewhere under ``tests/``.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
DOC = ROOT / "docs" / "security.md"

NAME = re.compile(r"(?:tests/)?((?:\w+/)*test_\w+\.py)(?:::(test_\w+))?|\b(test_\w+)\b(?!\.py)")


def _defined() -> dict[str, set[str]]:
    """{path relative to tests/: names of the test functions it defines}"""
    out = {}
    for path in TESTS.rglob("test_*.py"):
        out[path.relative_to(TESTS).as_posix()] = set(re.findall(r"^\s*(?:async )?def (test_\w+)\(", path.read_text(),
                                                                 re.M))
    return out


def _resolve(name: str, files: dict[str, set[str]]) -> list[str]:
    """The test files a doc's (possibly shortened) path stands for."""
    return [f for f in files if f == name or f.endswith("/" + name)]


def named_tests(text: str, files: dict[str, set[str]]):
    """Yield (row, file or None, test name) for every test a threat table's last column names."""
    default = None
    for line in text.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("threat", "fault"):  # a table's header: it may name the tests' file
            match = re.search(r"`(?:tests/)?((?:\w+/)*test_\w+\.py)`", cells[-1])
            default = match.group(1) if match else None
            continue
        current = default
        for match in NAME.finditer(cells[-1]):
            path, qualified, bare = match.groups()
            if path:
                current = path
                if qualified:
                    yield cells[0], current, qualified
            else:
                yield cells[0], current, bare


def test_every_test_the_threat_tables_name_exists_where_they_say():
    files = _defined()
    text = DOC.read_text()
    problems, seen = [], 0
    for row, path, name in named_tests(text, files):
        seen += 1
        if path is None:
            if not any(name in names for names in files.values()):
                problems.append(f"{row[:60]!r}: {name} is defined nowhere under tests/")
            continue
        candidates = _resolve(path, files)
        if not candidates:
            problems.append(f"{row[:60]!r}: no test file {path}")
        elif not any(name in files[c] for c in candidates):
            where = [f for f, names in files.items() if name in names]
            problems.append(f"{row[:60]!r}: {name} is not in {path} (defined in {where or 'no file'})")
    assert seen > 80, seen  # the parser still reads the tables
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_missing_and_a_misplaced_test():
    files = {"annotations/test_a.py": {"test_one"}, "annotations/test_b.py": {"test_two"}}
    doc = ("| threat | defence | tests (`tests/annotations/test_a.py`) |\n|---|---|---|\n"
           "| x | y | `test_one`; `annotations/test_b.py::test_two`, `test_three` |\n")
    assert list(named_tests(doc, files)) == [("x", "annotations/test_a.py", "test_one"),
                                             ("x", "annotations/test_b.py", "test_two"),
                                             ("x", "annotations/test_b.py", "test_three")]
