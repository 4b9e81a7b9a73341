"""The task list page answers with ``task_rows`` instead of ``TaskOut`` (for speed); the OpenAPI
schema still names TaskOut, so the two must agree exactly."""
from datetime import datetime, timezone as dt_timezone

import pytest
from django.test import override_settings

from annotations.api import serializers as s
from annotations.models import ImportBatch, Task

from ..factories import TaskFactory

pytestmark = pytest.mark.django_db


def _tasks(project):
    batch = ImportBatch.objects.create(project=project, file_name="a.jsonl", format="jsonl", created_by=project.created_by)
    TaskFactory(project=project, metadata={"source": "ünï ✓", "n": [1, 2.5, None]}, import_batch=batch)
    TaskFactory(project=project, kind="comparison", state=Task.State.DONE, accepted_count=2,
                completed_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt_timezone.utc))
    TaskFactory(project=project, conversation=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                               {"role": "user", "content": "<script>x</script>"}])
    return list(Task.objects.filter(project=project).order_by("id"))


def test_task_rows_equal_the_serializer(project):
    tasks = _tasks(project)
    assert s.task_rows(tasks) == s.TaskOut(tasks, many=True).data
    assert [list(row) for row in s.task_rows(tasks)] == [list(s.TaskOut.Meta.fields)] * len(tasks)


@override_settings(TIME_ZONE="Europe/Paris")
def test_task_rows_equal_the_serializer_in_another_time_zone(project):
    from django.utils import timezone

    with timezone.override("Europe/Paris"):
        tasks = _tasks(project)
        rows = s.task_rows(tasks)
        assert rows == s.TaskOut(tasks, many=True).data
        assert rows[1]["completed_at"] == "2026-01-02T04:04:05.678901+01:00"


def test_list_endpoint_serves_the_rows(api, project, admin_user):
    tasks = _tasks(project)
    r = api(admin_user).get(f"/api/projects/{project.pk}/tasks/?page_size=2")
    assert r.status_code == 200
    assert r.json()["results"] == s.TaskOut(tasks[:2], many=True).data


def test_lease_row_equals_the_serializer(project, annotator):
    from annotations import selectors
    from annotations.models import CandidateReply, ModelVersion
    from annotations.services import leases

    from ..factories import ReplyFactory, comparison_task

    version = ModelVersion.objects.create(name="drafter", base_model="/m")
    demo = TaskFactory(project=project)
    ReplyFactory(task=demo, source=CandidateReply.Source.MODEL, model_version=version, content="Draft <b>1</b>")
    ReplyFactory(task=demo, source=CandidateReply.Source.MODEL, content="Draft two",
                 model_version=ModelVersion.objects.create(name="drafter-lora", base_model="/m", adapter_path="/a"))
    ReplyFactory(task=demo, source=CandidateReply.Source.HUMAN, content="A human reply, not a draft")
    comparison_task(project, k=3)
    seen = set()
    for _ in range(2):
        lease = leases.lease_next_task(project=project, annotator=annotator)
        selectors.load_replies(lease.task)
        assert s.lease_row(lease) == s.LeaseOut(lease).data
        seen.add(lease.task.kind)
        if lease.task.kind == "demonstration":
            assert [d["content"] for d in s.lease_row(lease)["task"]["drafts"]] == ["Draft <b>1</b>",
                                                                                     "Draft two"]
        else:
            assert len(s.lease_row(lease)["task"]["replies"]) == 3
    assert seen == {"demonstration", "comparison"}
