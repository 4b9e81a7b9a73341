"""The export builds its JSON lines in PostgreSQL (``to_json(text)``) and Python's ``json.dumps``
(ensure_ascii=False, compact) is the reference: the two must agree byte for byte on any text a task
can hold, so a line's bytes (and the snapshot's content hash) do not depend on which side wrote it."""
import json
import random
from pathlib import Path

import pytest
from django.db import connection

from annotations.exports.service import build_snapshot, create_snapshot
from annotations.exports.writers import dumps

from .helpers import comparison, demonstration

pytestmark = pytest.mark.django_db

ATTACKS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "attacks.jsonl"


def nasty_texts() -> list[str]:
    texts = ["plain", 'quote " and backslash \\ and slash /', "tab\tnewline\nreturn\rform\fback\b",
             "".join(chr(c) for c in range(1, 32)) + "\x7f", "line\u2028para\u2029", "bidi \u202e evil \u202c",
             "zero\u200bwidth\ufeff", "emoji 🐍 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "é ß ǅ İ", "\\u0041 is not A", "</script><!--",
             " leading and trailing ", "{\"json\": [1, 2]}"]
    if ATTACKS.exists():
        texts += [json.loads(line)["text"].replace("\x00", "") for line in ATTACKS.read_text().splitlines() if line]
    rng = random.Random(6)
    alphabet = [chr(c) for c in (*range(1, 128), 0xA0, 0x85, 0x2028, 0x1F600, 0xE9, 0x10FFFF, 0xFFFD)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(200)]
    return texts


def test_to_json_escapes_exactly_like_json_dumps():
    texts = nasty_texts()
    with connection.cursor() as cursor:
        cursor.execute("SELECT t, to_json(t)::text FROM unnest(%s::text[]) AS t", [texts])
        for text, encoded in cursor.fetchall():
            assert encoded == dumps(text), repr(text)


@pytest.fixture(autouse=True)
def snapshot_root(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


def test_every_exported_line_is_what_json_dumps_writes(project):
    texts = nasty_texts()[:40]
    for i, text in enumerate(texts):
        conversation = [{"role": "system", "content": f"sys {i}"}, {"role": "user", "content": text}]
        demonstration(project, conversation, [text[::-1] or "x"])
        comparison(project, [{"role": "user", "content": text}], [text, f"b{i}", f"c {text}"], [[[0], [1, 2]]])
    snap = build_snapshot(snapshot_id=create_snapshot(project=project, near_duplicates=False, eval_fraction=0.3).pk)
    folder = Path(snap.path)
    seen = 0
    for name in sorted(snap.files):
        if not name.endswith(".jsonl"):
            continue
        for line in (folder / name).read_text(encoding="utf-8").split("\n")[:-1]:
            assert dumps(json.loads(line)) == line, (name, line)
            seen += 1
    assert snap.counts["rows"]["sft.train"] + snap.counts["rows"].get("sft.eval", 0) == len(texts)
    assert seen == 2 * sum(snap.counts["rows"].values())  # data and meta lines
    sft = [json.loads(line) for name in ("sft.train.jsonl", "sft.eval.jsonl")  # not splitlines(): U+2028
           for line in (folder / name).read_text(encoding="utf-8").split("\n")[:-1]]
    assert sorted(row["messages"][1]["content"] for row in sft) == sorted(texts)
    assert all(row["messages"][2] == {"role": "assistant", "content": row["messages"][1]["content"][::-1] or "x"}
               for row in sft)


def test_the_python_rows_for_other_databases_equal_the_sql_rows(project):
    """SQLite (make run without PostgreSQL) exports through the ORM and Python; same rows."""
    from itertools import chain

    from annotations.exports import service
    from annotations.models import Review, Submission
    from tests.factories import UserFactory

    texts = nasty_texts()[:20]
    for i, text in enumerate(texts):
        demonstration(project, [{"role": "system", "content": f"s{i}"}, {"role": "user", "content": text}], [text],
                      flags={"1": ["unsafe"]} if i % 5 == 0 else None, source="edited_draft" if i % 3 else "human")
        comparison(project, [{"role": "user", "content": text}], [text, "b", "c"], [[[0], [1, 2]], [[1], [0], [2]]],
                   flags={2: ["factually_wrong"]} if i % 4 == 0 else None)
    fixed = Submission.objects.filter(project=project, kind="demonstration").first()
    better = fixed.task.replies.create(content="A reviewer's \"fix\"\n", source="human")
    Review.objects.create(submission=fixed, reviewer=UserFactory(), decision="fix", fixed_reply=better)
    snapshot = create_snapshot(project=project, near_duplicates=False, exclude_flagged=False)
    qs = service.selected_submissions(snapshot)

    def sft(row):
        return (*row[:10], json.loads(row[10]) if row[10] else None, *row[11:])

    def dpo(row):
        return (row[0], row[1], json.loads(row[2]), row[3], row[4], service._replies(row[5]))

    by_sql = [sft(r) for r in chain.from_iterable(service._sft_rows(qs))]
    assert by_sql == [sft(r) for r in service._python_sft_rows(qs)]
    assert len(by_sql) == len(texts) and sum(r[9] for r in by_sql) == 1  # one fixed
    assert json.loads(next(r for r in by_sql if r[9])[12])["messages"][-1]["content"] == "A reviewer's \"fix\"\n"
    by_sql = [dpo(r) for r in chain.from_iterable(service._dpo_rows(qs))]
    assert by_sql == [dpo(r) for r in service._python_dpo_rows(qs)] and len(by_sql) == len(texts)
    # the replies column: every reply of the task, its hostile text intact behind the plain splits
    for row in by_sql:
        assert len(row[5]) == 3 and {source for source, _m in row[5].values()} <= {"human", "model", "edited_draft"}
    assert sorted(json.loads(m)[0]["content"] for row in by_sql for _s, m in row[5].values()) == sorted(
        texts + ["b", "c"] * len(texts))


def test_the_dpo_meta_line_is_what_json_dumps_writes():
    from collections import Counter

    from annotations.exports.service import _dpo_meta

    rng = random.Random(3)
    for tau in [None, 1.0, -1.0, 0.0, 1 / 3, -0.33335, 0.1 + 0.2, 2 / 7, 1e-5, -1e-7]:
        subs = [[[], {}, 1, 1, rng.randint(1, 10**12), "submitted", False] for _ in range(rng.randint(1, 4))]
        reviews = Counter(rng.choice(["pending", "accepted", "not_sampled"]) for _ in subs)
        complete = rng.random() < 0.5
        expected = dumps({"task_id": 7, "submission_ids": [s[4] for s in subs], "review": dict(reviews),
                          "task_complete": complete, "agreement_tau": None if tau is None else round(tau, 4)})
        assert _dpo_meta(7, subs, reviews, complete, tau) + "}" == expected
