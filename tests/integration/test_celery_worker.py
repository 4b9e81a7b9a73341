"""The queue for real: API -> on_commit -> Redis -> a `celery worker` process -> PostgreSQL."""
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import ImportBatch, Lease, Task
from annotations.services.leases import lease_next_task
from annotations.tasks import expire_leases
from tests.factories import TaskFactory
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def upload(api, user, project, content: bytes, name="tasks.jsonl"):
    f = io.BytesIO(content)
    f.name = name
    return api(user).post(f"/api/projects/{project.pk}/imports/", {"file": f}, format="multipart")


def test_import_runs_in_the_worker(celery_worker_process, api, project, admin_user):
    rows = b"".join(b'{"prompt": "question %d"}\n' % i for i in range(300))
    response = upload(api, admin_user, project, rows)
    assert response.status_code == 202
    batch_id = response.json()["id"]
    batch = wait_for(lambda: ImportBatch.objects.filter(pk=batch_id, status__in=["done", "failed"]).first(),
                     what="import to finish")
    assert (batch.status, batch.tasks_created, batch.error_count) == ("done", 300, 0), batch.errors
    assert Task.objects.filter(project=project).count() == 300


def test_bad_file_fails_in_the_worker_with_line_numbers(celery_worker_process, api, project, admin_user):
    response = upload(api, admin_user, project, b'{"prompt": "ok"}\n{"prompt": 5}\n')
    batch = wait_for(lambda: ImportBatch.objects.filter(pk=response.json()["id"], status__in=["done", "failed"]).first(),
                     what="import to finish")
    assert batch.status == "failed" and batch.errors == [{"line": 2, "reason": "prompt must be a non-empty string"}]
    assert Task.objects.filter(project=project).count() == 0


def test_expire_leases_job_returns_slots(celery_worker_process, project, annotator):
    task = TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator, now=timezone.now() - timedelta(hours=2))
    expire_leases.delay()
    wait_for(lambda: Lease.objects.get(pk=lease.pk).status == Lease.Status.EXPIRED, what="lease to expire")
    task.refresh_from_db()
    assert (task.state, task.lease_count) == (Task.State.OPEN, 0)


def test_missing_upload_fails_the_batch_with_a_reason(celery_worker_process, project, admin_user):
    from annotations.tasks import process_import

    batch = ImportBatch.objects.create(project=project, file_name="gone.jsonl", file="imports/gone.jsonl",
                                       format="jsonl", created_by=admin_user)
    process_import.delay(batch.pk)
    batch = wait_for(lambda: ImportBatch.objects.filter(pk=batch.pk, status="failed").first(), what="failure")
    assert batch.errors == [{"line": 0, "reason": "the uploaded file is missing from storage"}]
