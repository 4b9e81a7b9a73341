import io
import json

import pytest
from django.db import IntegrityError

from annotations.errors import ImportRejected
from annotations.models import CandidateReply, ModelVersion, Task
from annotations.services.imports import import_file

pytestmark = pytest.mark.django_db


def jsonl(*rows) -> io.BytesIO:
    return io.BytesIO("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows).encode())


def test_jsonl_prompts_conversations_and_replies(project):
    result = import_file(project=project, fmt="jsonl", stream=jsonl(
        {"prompt": "What is 2+2?", "category": "math"},
        {"conversation": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Joke?"}]},
        {"prompt": "Rank these", "kind": "comparison",
         "replies": ["A", {"content": "B", "source": "model", "model": "base-1"}]},
    ))
    assert result.ok and (result.rows_total, result.tasks_created) == (3, 3)
    math, multi, comp = Task.objects.filter(project=project).order_by("id")
    assert math.metadata == {"category": "math"} and math.conversation == [{"role": "user", "content": "What is 2+2?"}]
    assert len(multi.conversation) == 4
    assert comp.kind == "comparison"
    replies = list(comp.replies.order_by("id"))
    assert [(r.content, r.source, r.for_ranking) for r in replies] == [("A", "human", True), ("B", "model", True)]
    assert replies[1].model_version == ModelVersion.objects.get(name="base-1")


def test_bad_rows_report_line_numbers_and_store_nothing(project):
    result = import_file(project=project, fmt="jsonl", stream=jsonl(
        {"prompt": "fine"},
        "{not json",
        "",
        {"prompt": ""},
        {"conversation": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"prompt": "Rank", "kind": "comparison", "replies": ["only one"]},
        {"prompt": "ok again"},
        '["a list"]',
        {"prompt": "x", "kind": "poem"},
    ))
    assert not result.ok
    assert [e["line"] for e in result.errors] == [2, 4, 5, 6, 8, 9]
    reasons = " | ".join(e["reason"] for e in result.errors)
    for fragment in ("not valid JSON", "non-empty string", "end with a user message", "2 to 9 replies",
                     "JSON object", "kind must be one of"):
        assert fragment in reasons
    assert Task.objects.count() == 0 and CandidateReply.objects.count() == 0


def test_exact_duplicates_are_skipped_within_file_and_against_project(project):
    import_file(project=project, fmt="jsonl", stream=jsonl({"prompt": "same"}))
    result = import_file(project=project, fmt="jsonl", stream=jsonl({"prompt": "same"}, {"prompt": "new"},
                                                                      {"prompt": "new"}))
    assert result.ok and (result.tasks_created, result.duplicates) == (1, 2)
    assert Task.objects.filter(project=project).count() == 2


def test_csv_with_reply_columns_and_metadata(project):
    data = "prompt,kind,reply_a,reply_b,category\n\"Multi\nline\",comparison,First,Second,qa\nSecond prompt,,,,chat\n"
    result = import_file(project=project, fmt="csv", stream=io.BytesIO(data.encode()))
    assert result.ok, result.errors
    comp, demo = Task.objects.filter(project=project).order_by("id")
    assert comp.conversation[0]["content"] == "Multi\nline" and comp.metadata == {"category": "qa"}
    assert list(comp.replies.values_list("content", flat=True)) == ["First", "Second"]
    assert demo.kind == "demonstration"


def test_csv_errors_name_the_starting_line(project):
    data = "prompt,kind\nok,demonstration\n\"two\nlines\",bogus\nshort\n"
    result = import_file(project=project, fmt="csv", stream=io.BytesIO(data.encode()))
    assert [e["line"] for e in result.errors] == [3, 5]
    assert Task.objects.count() == 0


def test_csv_without_prompt_column_is_refused(project):
    result = import_file(project=project, fmt="csv", stream=io.BytesIO(b"question\nwhy\n"))
    assert result.errors == [{"line": 1, "reason": "the header needs a 'prompt' column"}]


def test_invalid_utf8_line_is_reported(project):
    stream = io.BytesIO(b'{"prompt": "ok"}\n{"prompt": "\xff\xfe"}\n')
    result = import_file(project=project, fmt="jsonl", stream=stream)
    assert result.errors == [{"line": 2, "reason": "not valid UTF-8"}]


def test_limits_give_clear_errors(project, settings):
    settings.IMPORT_MAX_FIELD_CHARS = 10
    result = import_file(project=project, fmt="jsonl", stream=jsonl({"prompt": "x" * 11}))
    assert "longer than 10 characters" in result.errors[0]["reason"]
    settings.IMPORT_MAX_ROWS = 2
    result = import_file(project=project, fmt="jsonl", stream=jsonl({"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}))
    assert result.errors[0] == {"line": 3, "reason": "more than 2 rows"} and Task.objects.count() == 0
    with pytest.raises(ImportRejected, match="limit"):
        import_file(project=project, fmt="jsonl", stream=jsonl({"prompt": "a"}), size=settings.IMPORT_MAX_BYTES + 1)


def test_many_rows_insert_in_chunks(project):
    rows = [{"prompt": f"prompt {i}"} for i in range(5003)]
    result = import_file(project=project, fmt="jsonl", stream=jsonl(*rows))
    assert result.ok and result.tasks_created == 5003
    assert Task.objects.filter(project=project, state="open").count() == 5003


def test_database_refuses_duplicate_content_hash(project):
    import_file(project=project, fmt="jsonl", stream=jsonl({"prompt": "x"}))
    task = Task.objects.get(project=project)
    with pytest.raises(IntegrityError):
        Task.objects.create(project=project, kind=task.kind, conversation=task.conversation,
                            content_hash=task.content_hash)
