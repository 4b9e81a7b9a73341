import math
from pathlib import Path

import pytest

from models_service.finetune.service import create_finetune_job, run_finetune_job
from models_service.models import FinetuneJob

from .conftest import TINY

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def greedy(model, tokenizer, prompts):
    import torch

    out = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=12, do_sample=False)
        out.append(tokenizer.decode(gen[0][ids["input_ids"].shape[1]:]))
    return out


def run(project, snapshot, base_model, method, **params):
    job = create_finetune_job(project=project, snapshot=snapshot, method=method, base_model=base_model,
                              params={**TINY, **params}, enqueue=False)
    return run_finetune_job(job_id=job.pk)


def test_sft_run_records_finite_loss_per_step_and_the_adapter_changes_greedy_output(project, snapshot, base_model,
                                                                                    base_model_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job = run(project, snapshot, base_model, "sft", max_steps=8, learning_rate=3e-3)
    assert job.status == FinetuneJob.Status.DONE, job.error + job.log[-2000:]
    assert [m["step"] for m in job.metrics] == list(range(1, 9))
    assert all(math.isfinite(m["loss"]) for m in job.metrics)
    assert job.summary["tokens"] > 0 and job.summary["tokens_per_second"] > 0
    assert job.progress == 1.0
    version = job.result_model
    assert version.base == base_model and version.adapter_path == job.output_path
    assert (Path(job.output_path) / "adapter_config.json").is_file()

    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    base = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32).eval()
    prompts = ["What is 3 plus 3?", "What is 5 plus 5?", "What is 11 plus 11?"]
    before = greedy(base, tokenizer, prompts)
    tuned = PeftModel.from_pretrained(base, version.adapter_path).eval()
    after = greedy(tuned, tokenizer, prompts)
    assert before != after

    # The in-process backend serves the finetuned version with its adapter applied.
    from models_service.backends import backend_for
    from models_service.client import Sampling

    version.backend = "transformers"
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    greedy_12 = Sampling(n=1, temperature=0, max_tokens=12)
    drafted = [c[0].text for c in backend_for(version).chat_batch(conversations, greedy_12)]
    base_model.backend = "transformers"
    plain = [c[0].text for c in backend_for(base_model).chat_batch(conversations, greedy_12)]
    assert all(drafted) and drafted != plain


def test_dpo_run_records_finite_loss_per_step(project, snapshot, base_model):
    job = run(project, snapshot, base_model, "dpo", max_steps=3)
    assert job.status == FinetuneJob.Status.DONE, job.error + job.log[-2000:]
    assert [m["step"] for m in job.metrics] == [1, 2, 3]
    assert all(math.isfinite(m["loss"]) for m in job.metrics)
    assert abs(job.metrics[0]["loss"] - math.log(2)) < 0.05  # the policy starts equal to the reference
    assert job.result_model.adapter_path


def test_a_crashing_training_process_fails_the_job_with_its_reason(project, snapshot, base_model):
    job = run(project, snapshot, base_model, "sft", target_modules=["no_such_module"])
    assert job.status == FinetuneJob.Status.FAILED
    assert "exited with code 1" in job.error and job.result_model is None


@pytest.mark.django_db(transaction=True)  # the progress printer reads the job from its own thread
def test_manage_py_finetune_prints_each_step_and_the_outcome(project, snapshot, base_model):
    import io
    import json

    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    call_command("finetune", snapshot.pk, method="sft", base=base_model.name, user=project.created_by.username,
                 settings=[f"{k}={json.dumps(v)}" for k, v in {**TINY, "max_steps": 2}.items()],
                 stdout=out, stderr=err)
    result = json.loads(out.getvalue())
    job = FinetuneJob.objects.get(pk=result["job"])
    assert result["status"] == "done" and result["model"] == job.result_model.name
    lines = err.getvalue().splitlines()
    assert any(line.strip() == "running" for line in lines)
    steps = [line.split()[1] for line in lines if line.strip().startswith("step ")]
    assert steps == ["1/2", "2/2"], lines
    assert job.created_by == project.created_by
