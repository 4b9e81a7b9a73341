"""What quality control changes in dataset snapshots: gold left out by default, the reviewer's fix
exported instead of the original, completion / pending-review / agreement filters, and review state
per row in the meta files."""
import json
from pathlib import Path

import pytest

from annotations.exports.service import build_snapshot, create_snapshot
from annotations.errors import InvalidInput
from annotations.models import Project, Role, Submission
from annotations.quality import gold
from annotations.services.leases import lease_next_task
from annotations.services.reviews import review_submission
from annotations.services.submissions import submit_demonstration
from tests.factories import TaskFactory, UserFactory

from .helpers import ranked_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def snapshot_root(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


def build(project, **kwargs):
    kwargs.setdefault("near_duplicates", False)
    kwargs.setdefault("eval_fraction", 0)
    snap = build_snapshot(snapshot_id=create_snapshot(project=project, created_by=project.created_by, **kwargs).pk)
    folder = Path(snap.path)

    def lines(name):
        path = folder / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    return snap, lines


def demo(project, annotator, text, key):
    TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    return submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key=key, text=text)


def test_demonstrations_carry_review_state_fix_and_completion(project, annotator, member):
    Project.objects.filter(pk=project.pk).update(review_rate=0.0, review_new_until=2, overlap=1)
    project.refresh_from_db()
    reviewer = member(Role.REVIEWER)
    fixed = demo(project, annotator, "Paris is in Italy.", "a")          # new annotator: reviewed
    accepted = demo(project, annotator, "Water is wet.", "b")            # reviewed
    assert fixed.review_required and accepted.review_required
    review_submission(submission_id=fixed.pk, reviewer=reviewer, decision="fix", reason="facts",
                      fixed_text="Paris is in France.")
    review_submission(submission_id=accepted.pk, reviewer=reviewer, decision="accept")
    unsampled = demo(project, annotator, "Two accepted: no longer new.", "c")
    assert not unsampled.review_required
    newcomer = member()
    pending = demo(project, newcomer, "A newcomer's work waits for review.", "e")
    assert pending.review_required
    snap, lines = build(project, formats=["sft"])
    texts = [row["messages"][-1]["content"] for row in lines("sft.train.jsonl")]
    meta = lines("sft.train.meta.jsonl")
    assert len(meta) == len(texts) == 4
    by_sub = {m["submission_id"]: (m, t) for m, t in zip(meta, texts, strict=True)}
    assert by_sub[fixed.pk][1] == "Paris is in France." and by_sub[fixed.pk][0]["review"] == "fixed"
    assert by_sub[accepted.pk][0]["review"] == "accepted" and by_sub[accepted.pk][0]["task_complete"]
    assert by_sub[unsampled.pk][0]["review"] == "not_sampled" and by_sub[unsampled.pk][0]["task_complete"]
    assert by_sub[pending.pk][0]["review"] == "pending" and not by_sub[pending.pk][0]["task_complete"]
    assert snap.counts["review"] == {"fixed": 1, "accepted": 1, "not_sampled": 1, "pending": 1}
    # Filters: complete tasks only; pending review left out
    _snap, lines = build(project, formats=["sft"], completed_only=True)
    assert {m["submission_id"] for m in lines("sft.train.meta.jsonl")} == {fixed.pk, accepted.pk, unsampled.pk}
    _snap, lines = build(project, formats=["sft"], exclude_pending_review=True)
    assert pending.pk not in {m["submission_id"] for m in lines("sft.train.meta.jsonl")}
    sheet = (Path(_snap.path) / "datasheet.md").read_text()
    assert "## Review" in sheet and "- not_sampled: 1" in sheet


def test_gold_work_is_left_out_unless_asked_for(project, annotator):
    Project.objects.filter(pk=project.pk).update(gold_rate=1.0)
    project.refresh_from_db()
    task = TaskFactory(project=project)
    gold.set_gold(project=project, task_id=task.pk, created_by=project.created_by, text="The reference.")
    lease = lease_next_task(project=project, annotator=annotator)
    sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="g", text="Gold work.")
    _snap, lines = build(project, formats=["sft"])
    assert lines("sft.train.jsonl") == []
    _snap, lines = build(project, formats=["sft"], exclude_gold=False)
    assert [m["submission_id"] for m in lines("sft.train.meta.jsonl")] == [sub.pk]


def test_min_agreement_keeps_only_tasks_whose_annotators_agree(project):
    a, b, c = UserFactory(), UserFactory(), UserFactory()
    agree, _ids, _ = ranked_task(project, 3, [(a, [[0], [1], [2]]), (b, [[0], [1], [2]])])
    disagree, _ids, _ = ranked_task(project, 3, [(a, [[0], [1], [2]]), (c, [[2], [1], [0]])])
    alone, _ids, _ = ranked_task(project, 3, [(a, [[0], [1], [2]])])
    snap, lines = build(project, formats=["dpo"])
    assert {m["task_id"] for m in lines("dpo.train.meta.jsonl")} == {agree.pk, alone.pk}  # disagree: no pairs
    snap, lines = build(project, formats=["dpo"], min_agreement=0.5)
    meta = lines("dpo.train.meta.jsonl")
    assert {m["task_id"] for m in meta} == {agree.pk} and len(meta) == len(lines("dpo.train.jsonl")) == 3
    assert meta[0]["agreement_tau"] == 1.0 and meta[0]["review"] == {"not_sampled": 2}
    assert sorted(meta[0]["submission_ids"]) == sorted(
        Submission.objects.filter(task=agree).values_list("pk", flat=True))
    assert snap.counts["excluded"]["dpo_tasks_below_min_agreement"] == 2  # disagreeing, and one annotator alone
    sheet = json.loads((Path(snap.path) / "datasheet.json").read_text())
    assert sheet["agreement"]["dpo_tasks_measured"] == 1 and sheet["agreement"]["mean_task_tau"] == 1.0
    assert "Mean task tau 1.0 over 1 DPO tasks" in (Path(snap.path) / "datasheet.md").read_text()
    with pytest.raises(InvalidInput, match="min_agreement"):
        create_snapshot(project=project, min_agreement=2)
