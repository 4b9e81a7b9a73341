"""Through a real Celery worker: a killed trainer fails the job and the worker lives on; retry and
cancel work; the export API builds a snapshot on the worker and serves its files to the allowed roles."""
import os
import signal

import pytest

from annotations.models import DatasetSnapshot, Role
from models_service.finetune.service import cancel_finetune_job, create_finetune_job, retry_finetune_job
from models_service.models import FinetuneJob
from tests.annotations.exports.helpers import comparison, demonstration
from tests.processes import wait_for

from .conftest import TINY, make_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def job_state(pk):
    return FinetuneJob.objects.get(pk=pk)


def test_killed_trainer_fails_the_job_worker_survives_then_retry_and_cancel(celery_worker_process, project,
                                                                            base_model):
    snapshot = make_snapshot(project, n=4)
    job = create_finetune_job(project=project, snapshot=snapshot, method="sft", base_model=base_model,
                              params={**TINY, "max_steps": 500})
    wait_for(lambda: job_state(job.pk).step >= 1, timeout=180, what="first step")
    pid = job_state(job.pk).child_pid
    os.kill(pid, signal.SIGKILL)
    failed = wait_for(lambda: (j := job_state(job.pk)).status == "failed" and j, timeout=60, what="failed")
    assert failed.error == "training process killed by signal SIGKILL"
    assert failed.metrics and failed.result_model is None
    assert celery_worker_process.proc.poll() is None  # the worker is alive

    retry_finetune_job(job_id=job.pk)
    wait_for(lambda: (j := job_state(job.pk)).step >= 1 and j.attempts == 2, timeout=180, what="retry running")
    pid = job_state(job.pk).child_pid
    cancel_finetune_job(job_id=job.pk)
    wait_for(lambda: job_state(job.pk).child_pid is None, timeout=60, what="child reaped")
    assert job_state(job.pk).status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert celery_worker_process.proc.poll() is None


def test_export_through_the_api_on_the_worker_and_download_by_role(celery_worker_process, project, api, member):
    demonstration(project, [{"role": "user", "content": "Hi"}], ["Hello."])
    comparison(project, [{"role": "user", "content": "Pick"}], ["A", "B"], [[[0], [1]]])
    engineer = member(Role.ENGINEER)
    base = f"/api/projects/{project.pk}/snapshots/"
    response = api(engineer).post(base, {"eval_fraction": 0, "licence": "CC-BY-4.0"}, format="json")
    assert response.status_code == 202, response.content
    pk = response.json()["id"]
    wait_for(lambda: DatasetSnapshot.objects.get(pk=pk).status == "ready", timeout=120, what="snapshot ready")
    detail = api(engineer).get(f"{base}{pk}/").json()
    assert detail["counts"]["rows"] == {"sft.train": 1, "dpo.train": 1}
    download = api(engineer).get(f"{base}{pk}/download/", {"file": "sft.train.jsonl"})
    assert download.status_code == 200
    assert b'"assistant","content":"Hello."' in b"".join(download.streaming_content)
    assert api(engineer).get(f"{base}{pk}/download/", {"file": "../../etc/passwd"}).status_code == 400
    for role in (Role.ANNOTATOR, Role.REVIEWER):
        assert api(member(role)).get(f"{base}{pk}/download/", {"file": "sft.train.jsonl"}).status_code == 403
