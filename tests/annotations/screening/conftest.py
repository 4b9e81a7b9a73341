import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from annotations.models import CandidateReply, Lease, Submission, Task, TaskKind
from annotations.screening.corpus import Corpus
from annotations.services.imports import content_hash
from tests.factories import UserFactory

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
HOSTILE = {"jailbreak", "injection", "harmful", "privacy", "poisoning-trigger"}


def demo_prompts() -> list[dict]:
    return [json.loads(line) for line in (SHARED / "demo_prompts.jsonl").read_text().splitlines() if line.strip()]


def clean_prompts() -> list[str]:
    return [r["prompt"] for r in demo_prompts() if r["category"] not in HOSTILE]


def attacks() -> list[dict]:
    return [json.loads(line) for line in (SHARED / "attacks.jsonl").read_text().splitlines() if line.strip()]


def corpus_of(prompts, replies=None, pairs=None) -> Corpus:
    corpus = Corpus()
    for i, prompt in enumerate(prompts):
        corpus.add(i + 1, [{"role": "user", "content": prompt}], replies=(replies or {}).get(i, ()),
                   pairs=(pairs or {}).get(i, ()))
    return corpus


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


def store_preferences(project, dataset, annotators: int = 5) -> list[Task]:
    """The dataset as comparison tasks, each ranked once (chosen first), in a few bulk inserts."""
    users = [UserFactory() for _ in range(annotators)]
    version = project.current_instructions
    tasks = Task.objects.bulk_create([
        Task(project=project, kind=TaskKind.COMPARISON, conversation=[{"role": "user", "content": item.prompt}],
             content_hash=content_hash(TaskKind.COMPARISON, [{"role": "user", "content": item.prompt}], item.replies),
             state=Task.State.DONE, lease_count=0, submission_count=1)
        for item in dataset.items])
    replies = CandidateReply.objects.bulk_create([
        CandidateReply(task=task, content=text, source=CandidateReply.Source.HUMAN, for_ranking=True)
        for task, item in zip(tasks, dataset.items, strict=True) for text in item.replies])
    now = timezone.now()
    leases = Lease.objects.bulk_create([
        Lease(project=project, task=task, annotator=users[i % annotators], status=Lease.Status.SUBMITTED,
              created_at=now, expires_at=now + timedelta(hours=1), instruction_version=version)
        for i, task in enumerate(tasks)])
    Submission.objects.bulk_create([
        Submission(project=project, task=task, lease=lease, annotator=lease.annotator, kind=TaskKind.COMPARISON,
                   instruction_version=version, idempotency_key=f"s{task.pk}",
                   ranking=[[replies[2 * i].pk], [replies[2 * i + 1].pk]])
        for i, (task, lease) in enumerate(zip(tasks, leases, strict=True))])
    return tasks
