"""Task counts come from trigger-kept deltas (annotations.models.TaskCount); they must always equal
a plain count of the task table, whatever changed the tasks."""
import io
import json
from datetime import timedelta

from django.utils import timezone

from annotations import selectors
from annotations.models import Project, Task, TaskCount
from annotations.services import task_counts
from annotations.services.imports import import_file
from annotations.services.leases import lease_next_task, reclaim_expired_leases, release_lease
from annotations.services.projects import update_project_settings
from annotations.services.submissions import submit_demonstration
from tests.factories import ProjectFactory, TaskFactory


def scanned(project) -> dict:
    counts = {"total": 0, "by_state": {s: 0 for s in Task.State.values}, "by_kind": {}, "complete": 0}
    for task in Task.objects.filter(project=project):
        counts["total"] += 1
        counts["by_state"][task.state] += 1
        counts["by_kind"][task.kind] = counts["by_kind"].get(task.kind, 0) + 1
        counts["complete"] += task.completed_at is not None and task.state != Task.State.GOLD
    return counts


def test_counts_follow_every_kind_of_change(project, member):
    first, second = member(), member()
    other = ProjectFactory()
    TaskFactory.create_batch(3, project=other)
    assert selectors.task_counts(project=project) == scanned(project)
    lines = [json.dumps({"prompt": f"Imported question {i}?"}) for i in range(40)]
    import_file(project=project, stream=io.BytesIO("\n".join(lines).encode()), fmt="jsonl")  # COPY
    TaskFactory.create_batch(2, project=project, kind="comparison")
    assert selectors.task_counts(project=project)["total"] == 42
    assert selectors.task_counts(project=project) == scanned(project)

    now = timezone.now()
    leases = [lease_next_task(project=project, annotator=first, now=now) for _ in range(3)]
    submit_demonstration(lease_id=leases[0].pk, annotator=first, idempotency_key="k1", text="An answer.")
    release_lease(lease_id=leases[1].pk, annotator=first)
    assert selectors.task_counts(project=project) == scanned(project)
    assert selectors.task_counts(project=project)["by_state"]["done"] == 1

    lease_next_task(project=project, annotator=second, now=now)
    reclaim_expired_leases(project=project, now=now + timedelta(seconds=project.lease_seconds + 1))
    update_project_settings(project=project, overlap=2)  # recomputes states in one UPDATE
    Task.objects.filter(project=project, kind="comparison").delete()
    Task.objects.filter(pk__in=Task.objects.filter(project=project).values("pk")[:3]).update(completed_at=now)
    assert selectors.task_counts(project=project) == scanned(project)
    assert selectors.task_counts(project=other) == scanned(other)

    rows_before = TaskCount.objects.filter(project=project).count()
    task_counts.compact()
    assert TaskCount.objects.filter(project=project).count() < rows_before
    assert TaskCount.objects.filter(project=project).count() <= 2 * len(Task.State.values)
    assert selectors.task_counts(project=project) == scanned(project)
    assert selectors.task_counts(project=other) == scanned(other)


def test_compaction_forgets_projects_that_are_gone_and_keeps_others(db):
    kept = ProjectFactory()
    TaskFactory.create_batch(2, project=kept)
    missing = (Project.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1000
    # What a deleted project's tasks leave behind: the delete trigger's deltas, with no project row.
    TaskCount.objects.create(project_id=missing, kind="demonstration", state="open", n=-2)
    task_counts.compact()
    assert not TaskCount.objects.filter(project_id=missing).exists()
    assert TaskCount.objects.filter(project=kept).count() == 1
    assert selectors.task_counts(project=kept) == scanned(kept) and scanned(kept)["total"] == 2


def test_counts_endpoint_reads_the_deltas(api, admin_user, project):
    TaskFactory.create_batch(4, project=project)
    Task.objects.filter(pk=Task.objects.filter(project=project).first().pk).update(state="done")
    body = api(admin_user).get(f"/api/projects/{project.pk}/tasks/counts/").json()
    assert body["total"] == 4 and body["by_kind"] == {"demonstration": 4}
    assert body["by_state"]["open"] == 3 and body["by_state"]["done"] == 1
