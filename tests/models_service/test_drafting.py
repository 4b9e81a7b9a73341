import pytest

from annotations.models import CandidateReply, Task
from models_service.drafting import build_comparisons, draft_task, run_drafting
from models_service.models import ModelJob
from tests.factories import ReplyFactory, TaskFactory

from .fake_server import FakeModelServer, chat, status

pytestmark = pytest.mark.django_db


def drafting_job(project, version, **params):
    return ModelJob.objects.create(project=project, kind="drafting", model_version=version, params=params)


def test_job_drafts_n_per_task_with_model_and_sampling(project, model_at):
    tasks = TaskFactory.create_batch(5, project=project)
    with FakeModelServer([chat("draft one", "draft two", tokens=3)]) as server:
        version = model_at(server)
        job = run_drafting(job_id=drafting_job(project, version, n=2, temperature=0.7, max_tokens=64).pk)
    assert (job.status, job.total, job.done, job.failed, job.skipped) == ("done", 5, 5, 0, 0)
    assert job.completion_tokens == 30
    assert all(r["max_tokens"] == 64 and r["n"] == 2 and r["temperature"] == 0.7 for r in server.requests)
    for task in tasks:
        drafts = list(task.replies.all())
        assert [d.content for d in drafts] == ["draft one", "draft two"]
        assert all(d.source == "model" and d.model_version == version and not d.for_ranking for d in drafts)
        assert drafts[0].sampling_params["max_tokens"] == 64 and drafts[0].sampling_params["finish_reason"] == "stop"


def test_rerun_never_duplicates_drafts(project, model_at):
    TaskFactory.create_batch(3, project=project)
    with FakeModelServer([chat("d1", "d2")]) as server:
        version = model_at(server)
        run_drafting(job_id=drafting_job(project, version, n=2).pk)
        again = run_drafting(job_id=drafting_job(project, version, n=2).pk)
    assert (again.done, again.skipped) == (0, 3)
    assert CandidateReply.objects.count() == 6 and len(server.requests) == 3


def test_partial_drafts_are_topped_up(project, model_at):
    task = TaskFactory(project=project)
    with FakeModelServer([chat("only one"), chat("x", "y")]) as server:
        version = model_at(server)
        ReplyFactory(task=task, source="model", model_version=version, content="existing")
        run_drafting(job_id=drafting_job(project, version, n=3).pk)
    assert server.requests[0]["n"] == 2
    assert task.replies.count() == 3


def test_server_errors_fail_items_and_the_job_keeps_the_reason(project, model_at, settings):
    TaskFactory.create_batch(2, project=project)
    with FakeModelServer([status(400, "model does not exist")]) as server:
        job = run_drafting(job_id=drafting_job(project, model_at(server), n=1).pk)
    assert (job.status, job.done, job.failed) == ("failed", 0, 2)
    assert "model does not exist" in job.error and CandidateReply.objects.count() == 0


def test_finished_or_cancelled_jobs_do_not_run_again(project, model_at):
    TaskFactory(project=project)
    with FakeModelServer([chat("d")]) as server:
        version = model_at(server)
        job = drafting_job(project, version, n=1)
        ModelJob.objects.filter(pk=job.pk).update(status="cancelled")
        assert run_drafting(job_id=job.pk).status == "cancelled"
    assert server.requests == []


def test_only_demonstrations_of_the_selected_batch_are_drafted(project, model_at):
    chosen, other = TaskFactory(project=project), TaskFactory(project=project)
    with FakeModelServer([chat("d")]) as server:
        run_drafting(job_id=drafting_job(project, model_at(server), n=1, task_ids=[chosen.pk]).pk)
    assert chosen.replies.count() == 1 and other.replies.count() == 0


def test_draft_task_synchronously(project, model_at):
    task = TaskFactory(project=project)
    with FakeModelServer([chat("a", "b")]) as server:
        drafts = draft_task(task=task, model_version=model_at(server), n=2)
    assert [d.content for d in drafts] == ["a", "b"]


def test_comparisons_are_assembled_from_drafts_and_human_replies(project, model_at):
    task = TaskFactory(project=project, metadata={"category": "qa"})
    with FakeModelServer([chat("m1", "m2", "m2")]) as server:
        version = model_at(server)
        draft_task(task=task, model_version=version, n=3)
    human = ReplyFactory(task=task, source="human", content="written by a person")
    assert build_comparisons(project=project, k=3) == 1
    assert build_comparisons(project=project, k=3) == 0  # idempotent
    comparison = Task.objects.get(project=project, kind="comparison")
    replies = list(comparison.replies.order_by("id"))
    assert [r.content for r in replies] == ["written by a person", "m1", "m2"]  # duplicate text dropped
    assert all(r.for_ranking for r in replies) and replies[0].parent_id == human.pk
    assert replies[1].model_version == version and comparison.metadata["source_task"] == task.pk


def test_a_finished_import_queues_a_drafting_job_with_the_projects_model(project, model_at, admin_user,
                                                                         django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotations.models import ImportBatch
    from annotations.services.imports import run_import_batch
    from annotations.services.projects import update_project_settings

    with FakeModelServer([chat("d")]) as server:
        version = model_at(server, name="project-model")
    project = update_project_settings(project=project, draft_model=version, draft_on_import=True, drafts_n=2)
    stored = default_storage.save("imports/t.jsonl", ContentFile(b'{"prompt": "one"}\n{"prompt": "two"}\n'))
    batch = ImportBatch.objects.create(project=project, file_name="t.jsonl", file=stored, format="jsonl",
                                       created_by=admin_user)
    with django_capture_on_commit_callbacks() as callbacks:
        run_import_batch(batch_id=batch.pk)
    callbacks[0]()  # the import_finished signal; the job's own on_commit (queueing) is not run here
    job = ModelJob.objects.get(project=project)
    assert (job.kind, job.model_version, job.params["import_batch"], job.params["n"]) == (
        "drafting", version, batch.pk, 2)


def test_no_drafting_job_when_the_project_turned_it_off(project, admin_user, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotations.models import ImportBatch
    from annotations.services.imports import run_import_batch

    stored = default_storage.save("imports/u.jsonl", ContentFile(b'{"prompt": "one"}\n'))
    batch = ImportBatch.objects.create(project=project, file_name="u.jsonl", file=stored, format="jsonl",
                                       created_by=admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        run_import_batch(batch_id=batch.pk)
    assert not ModelJob.objects.exists()


def adapter_at(server, base_name="base"):
    from annotations.models import ModelVersion

    base = ModelVersion.objects.create(name=base_name, backend="vllm", endpoint=server.base_url)
    return ModelVersion.objects.create(name=f"{base_name}-sft-ft7", base=base, backend="vllm",
                                       endpoint=server.base_url, adapter_path="/adapters/7")


def lora_or_chat(text):
    draft = chat(text)
    return lambda body: (200, {}) if "lora_name" in body else draft(body)


def test_a_finetuned_version_has_its_adapter_loaded_then_is_asked_by_its_name(project):
    TaskFactory.create_batch(2, project=project)
    with FakeModelServer([lora_or_chat("tuned draft")]) as server:
        tuned = adapter_at(server)
        project.draft_model = tuned
        project.save()
        job = run_drafting(job_id=drafting_job(project, tuned, n=1).pk)
        one = draft_task(task=TaskFactory(project=project), n=1)  # the synchronous path: the project's model
    assert job.status == "done" and job.done == 2
    loads = [r for r in server.requests if "lora_name" in r]
    assert loads == [{"lora_name": "base-sft-ft7", "lora_path": "/adapters/7"}] * 2  # once per job / call
    assert server.requests.index(loads[0]) == 0  # before the first chat request
    assert {r["model"] for r in server.requests if "messages" in r} == {"base-sft-ft7"}
    assert CandidateReply.objects.filter(model_version=tuned).count() == 3 and one[0].model_version == tuned


def test_an_adapter_the_server_cannot_load_fails_the_job_with_the_servers_words(project):
    TaskFactory.create_batch(2, project=project)

    def refuse(body):
        if "lora_name" in body:
            return 400, {"error": {"message": "LoRA is not enabled. Use --enable-lora to enable LoRA."}}
        return chat("never")(body)

    with FakeModelServer([refuse]) as server:
        job = run_drafting(job_id=drafting_job(project, adapter_at(server), n=1).pk)
    assert job.status == "failed" and "base-sft-ft7" in job.error and "--enable-lora" in job.error
    assert not [r for r in server.requests if "messages" in r] and CandidateReply.objects.count() == 0
