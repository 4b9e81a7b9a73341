import json
from pathlib import Path

import pytest
from datasets import load_dataset

from annotations.exports.service import build_snapshot, create_snapshot
from annotations.models import DatasetSnapshot

from .helpers import comparison, demonstration

pytestmark = pytest.mark.django_db

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(autouse=True)
def snapshot_root(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from models_service.model_files import prepare_model

    return AutoTokenizer.from_pretrained(prepare_model())


def build(project, **kwargs):
    kwargs.setdefault("near_duplicates", False)
    return build_snapshot(snapshot_id=create_snapshot(project=project, created_by=project.created_by, **kwargs).pk)


def test_every_format_loads_with_datasets_and_fits_trl(project, tokenizer):
    from trl.data_utils import apply_chat_template, is_conversational

    demonstration(project, CONV, ["Blue."], source="edited_draft")
    demonstration(project, [{"role": "user", "content": "Say hi"}], ["Hi!"])
    comparison(project, [{"role": "user", "content": "Pick a number"}], ["7", "3", "5"], [[[0], [1, 2]]],
               sources={1: "model"})
    snap = build(project, eval_fraction=0)
    folder = Path(snap.path)
    for fmt, columns in (("sft", ["messages"]), ("dpo", ["prompt", "chosen", "rejected"])):
        for ext, loader in (("jsonl", "json"), ("parquet", "parquet")):
            ds = load_dataset(loader, data_files=str(folder / f"{fmt}.train.{ext}"), split="train")
            assert ds.column_names == columns, (fmt, ext)
            for row in ds:
                assert is_conversational(row)
                rendered = apply_chat_template(row, tokenizer)
                assert rendered, (fmt, ext)
    sft = [json.loads(line) for line in (folder / "sft.train.jsonl").read_text().splitlines()]
    multi = next(r for r in sft if len(r["messages"]) == 5)
    assert multi["messages"][:4] == CONV and multi["messages"][4] == {"role": "assistant", "content": "Blue."}
    dpo = load_dataset("parquet", data_files=str(folder / "dpo.train.parquet"), split="train")
    assert len(dpo) == 2 and dpo[0]["prompt"] == [{"role": "user", "content": "Pick a number"}]
    assert {r["chosen"][0]["content"] for r in dpo} == {"7"}
    sheet = json.loads((folder / "datasheet.json").read_text())
    assert sheet["counts"]["rows"] == {"sft.train": 2, "dpo.train": 2}
    assert sheet["model_draft_share"]["sft_edited_drafts"] == 0.5
    assert sheet["model_draft_share"]["dpo_replies_from_model"] == 0.25
    assert "# Datasheet" in (folder / "datasheet.md").read_text()
    assert len(snap.content_sha256) == 64 and snap.status == "ready"


def test_pairs_from_a_ranking_with_a_tie_are_exactly_the_cross_group_pairs(project):
    comparison(project, [{"role": "user", "content": "Rank"}], ["A", "B", "C", "D"], [[[0], [1, 2], [3]]])
    snap = build(project, formats=["dpo"], eval_fraction=0)
    rows = [json.loads(line) for line in (Path(snap.path) / "dpo.train.jsonl").read_text().splitlines()]
    got = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    assert got == {("A", "B"), ("A", "C"), ("A", "D"), ("B", "D"), ("C", "D")}
    assert len(rows) == 5


def test_two_annotators_are_aggregated_by_borda(project):
    comparison(project, [{"role": "user", "content": "Rank"}], ["A", "B", "C"], [[[0], [1], [2]], [[1], [0], [2]]])
    snap = build(project, formats=["dpo"], eval_fraction=0)
    rows = [json.loads(line) for line in (Path(snap.path) / "dpo.train.jsonl").read_text().splitlines()]
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows} == {("A", "C"), ("B", "C")}


def test_filters_exclude_rejected_flagged_and_other_versions(project):
    from annotations.services.instructions import publish_instructions

    v1 = project.current_instructions
    demonstration(project, [{"role": "user", "content": "kept"}], ["ok"], status="accepted", version=v1)
    demonstration(project, [{"role": "user", "content": "rejected"}], ["no"], status="rejected")
    demonstration(project, [{"role": "user", "content": "pending"}], ["maybe"], status="submitted")
    demonstration(project, [{"role": "user", "content": "flagged"}], ["bad"], flags={"1": ["unsafe"]})
    comparison(project, [{"role": "user", "content": "R"}], ["A", "B", "C"], [[[0], [1], [2]]],
               flags={1: ["factually_wrong"]})
    v2 = publish_instructions(project=project, body="v2", published_by=project.created_by)
    demonstration(project, [{"role": "user", "content": "v2"}], ["new"], version=v2)

    snap = build(project, eval_fraction=0, instruction_versions=[1])
    rows = (Path(snap.path) / "sft.train.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["messages"][0]["content"] for r in rows) == ["kept", "pending"]
    dpo = [json.loads(r) for r in (Path(snap.path) / "dpo.train.jsonl").read_text().splitlines()]
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dpo] == [("A", "C")]
    assert snap.counts["flags"] == {"unsafe": 1, "factually_wrong": 1}

    accepted = build(project, eval_fraction=0, accepted_only=True, formats=["sft"])
    assert accepted.counts["rows"] == {"sft.train": 1}
    everything = build(project, eval_fraction=0, exclude_flagged=False, formats=["sft"])
    assert everything.counts["rows"] == {"sft.train": 4}


def test_a_ready_snapshot_is_immutable_and_rebuild_is_a_no_op(project):
    from django.core.exceptions import ValidationError

    demonstration(project, [{"role": "user", "content": "x"}], ["y"])
    snap = build(project)
    again = build_snapshot(snapshot_id=snap.pk)
    assert again.content_sha256 == snap.content_sha256
    stored = DatasetSnapshot.objects.get(pk=snap.pk)
    stored.name = "changed"
    with pytest.raises(ValidationError):
        stored.save()


def test_same_data_gives_the_same_content_hash(project):
    demonstration(project, [{"role": "user", "content": "x"}], ["y"])
    assert build(project).content_sha256 == build(project).content_sha256


@pytest.mark.parametrize("near", [True])
def test_exact_and_near_duplicate_prompts_land_in_the_same_split(project, near):
    topics = ["boil an egg", "change a bicycle tyre", "write a cover letter", "learn the piano",
              "grow tomatoes", "fix a leaking tap", "train a puppy", "bake sourdough bread",
              "file my taxes", "clean a cast iron pan", "tie a tie", "start running"]
    for topic in topics:
        demonstration(project, [{"role": "user", "content": f"How do I {topic}?"}], ["a"])
        demonstration(project, [{"role": "user", "content": f"how can i {topic}"}], ["b"])
        demonstration(project, [{"role": "user", "content": f"HOW   do I {topic}?"}], ["c"])  # exact after normalising
    snap = build(project, formats=["sft"], eval_fraction=0.5, near_duplicates=near)
    side = {}
    for split in ("train", "eval"):
        for line in (Path(snap.path) / f"sft.{split}.jsonl").read_text().splitlines():
            prompt = json.loads(line)["messages"][0]["content"].lower()
            topic = next(t for t in topics if t in prompt)
            side.setdefault(topic, set()).add(split)
    assert all(len(s) == 1 for s in side.values()), side
    assert {next(iter(s)) for s in side.values()} == {"train", "eval"}
    assert snap.counts["near_duplicate_prompts"] >= 2 * len(topics)


def test_export_command_builds_a_snapshot(project):
    import io

    from django.core.management import call_command

    demonstration(project, [{"role": "user", "content": "x"}], ["y"])
    out, err = io.StringIO(), io.StringIO()
    call_command("export", str(project.pk), "--format", "sft", "--eval-fraction", "0", "--no-near-duplicates",
                 "--licence", "CC0", stdout=out, stderr=err)
    result = json.loads(out.getvalue())
    assert result["counts"]["rows"] == {"sft.train": 1}
    assert json.loads((Path(result["path"]) / "datasheet.json").read_text())["licence"] == "CC0"
    # Every filter of the API is an option; the pending work is left out by --exclude-pending-review.
    call_command("export", str(project.pk), "--eval-fraction", "0", "--no-near-duplicates", "--include-gold",
                 "--completed-only", "--exclude-pending-review", "--min-agreement", "0.5", "--seed", "s1",
                 stdout=out, stderr=err)
    snap = DatasetSnapshot.objects.order_by("-id").first()
    assert snap.filters["exclude_gold"] is False and snap.filters["completed_only"] is True
    assert snap.filters["exclude_pending_review"] is True and snap.filters["min_agreement"] == 0.5
    assert snap.options["seed"] == "s1" and snap.status == "ready" and snap.counts["records"] == 0


def test_a_bare_day_means_the_whole_day_and_bad_days_are_refused():
    from datetime import time

    from annotations.errors import InvalidInput
    from annotations.exports.service import _when

    end = _when("2026-06-30", end=True)
    assert (end.date().isoformat(), end.time().replace(tzinfo=None)) == ("2026-06-30", time.max)
    start = _when("2026-06-30")
    assert start.time().replace(tzinfo=None) == time.min
    assert _when("2026-06-30T12:30:00+00:00", end=True).hour == 12
    for bad in ("2026-02-30", "yesterday", "2026-13-01T00:00"):
        with pytest.raises(InvalidInput):
            _when(bad, end=True)
