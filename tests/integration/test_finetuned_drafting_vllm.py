"""Closing the loop for real: a tiny LoRA SFT run on the bundled model registers a finetuned model
version; the project drafts with it; a vLLM CPU server started with ``--enable-lora`` (its own, on
``LW_LORA_TEST_PORT``, 8314 by default, for this test only) gets the adapter loaded at run time
and answers the drafting requests with it.

The proof that the adapter answered, not the base model: the server lists the adapter (its root is
the job's adapter folder) after drafting and not before; greedy drafts equal what the server
answers when asked for the adapter by name, and differ from the base model's greedy answers."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest

from annotations.models import CandidateReply, ModelVersion, Task
from annotations.services.projects import update_project_settings
from models_service.drafting import create_drafting_job, run_drafting
from models_service.finetune.service import create_finetune_job, run_finetune_job
from models_service.models import FinetuneJob
from tests.models_service.finetune.conftest import TINY, make_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
PORT = int(os.environ.get("LW_LORA_TEST_PORT", "8314"))
PROMPTS = ["What is 3 plus 3?", "What is 5 plus 5?", "What is 11 plus 11?"]


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def greedy(base_url, model, prompt):
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 16}
    return post_json(f"{base_url}/chat/completions", body)["choices"][0]["message"]["content"]


@pytest.fixture
def lora_server(tmp_path):
    """The bundled model behind vLLM with runtime LoRA loading, started now and stopped after the
    test (it boots while the finetune trains)."""
    from models_service.model_files import prepare_model
    from models_service.vllm_server import VllmServer, default_python

    python = default_python()
    if not python.exists():
        pytest.skip(f"vLLM venv missing ({python}): bash scripts/vllm_venv.sh")
    server = VllmServer(prepare_model(), port=PORT, python=python, served_model_name="smol-base",
                        enable_lora=True, max_lora_rank=8, enforce_eager=True, max_model_len=1024,
                        kvcache_space_gb=1, log_path=tmp_path / "vllm-lora.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(1200)
def test_drafting_with_a_finetuned_model_goes_to_its_adapter_on_vllm(project, settings, tmp_path, lora_server,
                                                                     django_capture_on_commit_callbacks):
    from models_service.model_files import prepare_model

    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")
    settings.FINETUNE_ROOT = str(tmp_path / "finetunes")
    settings.DRAFT_CONCURRENCY = 1  # one request at a time, like the greedy checks below
    base_url = f"{lora_server.base_url}/v1"
    base = ModelVersion.objects.create(name="smol-base", base_model=str(prepare_model()), backend="vllm",
                                       endpoint=base_url)
    snapshot = make_snapshot(project)
    job = create_finetune_job(project=project, snapshot=snapshot, method="sft", base_model=base, enqueue=False,
                              params={**TINY, "max_steps": 8, "learning_rate": 3e-3, "lora_r": 8})
    job = run_finetune_job(job_id=job.pk)
    assert job.status == FinetuneJob.Status.DONE, job.error + job.log[-2000:]
    tuned = job.result_model
    assert tuned.name == f"smol-base-sft-ft{job.pk}" and tuned.base == base and tuned.endpoint == base_url

    lora_server.wait_ready(timeout=900)
    assert [m["id"] for m in get_json(f"{base_url}/models")["data"]] == ["smol-base"]  # nothing loaded yet

    project = update_project_settings(project=project, actor=project.created_by, draft_model=tuned)
    tasks = [Task.objects.create(project=project, kind="demonstration", content_hash=f"loop-{i}",
                                 conversation=[{"role": "user", "content": p}]) for i, p in enumerate(PROMPTS)]
    with django_capture_on_commit_callbacks(execute=False):  # run here instead of on a worker
        drafting = create_drafting_job(project=project, n=1, temperature=0, max_tokens=16,
                                       task_ids=[t.pk for t in tasks])
    assert drafting.model_version == tuned  # the project's drafting model
    drafting = run_drafting(job_id=drafting.pk)
    assert (drafting.status, drafting.done, drafting.failed) == ("done", 3, 0), drafting.error

    served = {m["id"]: m for m in get_json(f"{base_url}/models")["data"]}
    assert set(served) == {"smol-base", tuned.name}
    assert served[tuned.name]["root"] == tuned.adapter_path and served[tuned.name]["parent"] == "smol-base"
    drafts = {d.task_id: d for d in CandidateReply.objects.filter(task__in=tasks, source="model")}
    assert len(drafts) == 3 and all(d.model_version == tuned for d in drafts.values())
    from_adapter = [greedy(base_url, tuned.name, p) for p in PROMPTS]
    from_base = [greedy(base_url, "smol-base", p) for p in PROMPTS]
    assert [drafts[t.pk].content for t in tasks] == from_adapter
    assert from_adapter != from_base
