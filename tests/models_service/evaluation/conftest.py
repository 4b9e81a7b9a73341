"""Builders for evaluation tests: a scripted model server whose replies depend on the model name,
a judge that prefers the good model's replies, and eval sets / runs made through the services."""
from __future__ import annotations

import json

import pytest

from annotations.models import ModelVersion, Role
from models_service.evaluation import eval_sets, runs
from models_service.evaluation.generation import run_generation
from models_service.evaluation.judging import run_arena_judging
from models_service.models import ModelJob
from tests.factories import MembershipFactory, TaskFactory, UserFactory


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


def arena_server_handler(body):
    """Generation: a model whose name has "good" in it answers "An excellent answer ...", any other
    "Meh ...". Judge requests (they carry a DATA block): prefer the side whose text contains
    "excellent"; a tie when both or neither do."""
    messages = body.get("messages") or []
    if messages and "DATA = " in messages[-1]["content"]:
        data = json.loads(messages[-1]["content"].split("DATA = ", 1)[1])
        a, b = "excellent" in data["A"], "excellent" in data["B"]
        better = "A" if a and not b else "B" if b and not a else "tie"
        content = json.dumps({"reason": "r", "better": better})
    elif "lora_name" in body:
        return 200, {}
    else:
        prompt = messages[-1]["content"] if messages else ""
        content = f"An excellent answer to: {prompt}" if "good" in body["model"] else f"Meh: {prompt}"
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": "stop"}], "usage": {"completion_tokens": 7}}


# Distinct enough that no two are near duplicates (the set collapses those to one).
PROMPTS = [
    "Write a limerick about a lighthouse keeper.", "What is the boiling point of nitrogen?",
    "Explain photosynthesis to a ten-year-old.", "Give me three tips for a job interview.",
    "Translate 'good morning' into Spanish.", "How many legs does a spider have?",
    "Suggest a name for a bakery.", "Why is the sky blue?", "Summarise the plot of Hamlet in two sentences.",
    "What should I pack for a weekend hike?", "Convert 100 Fahrenheit to Celsius.",
    "Recommend a board game for four players.", "What causes earthquakes?", "Write a haiku about coffee.",
    "How do vaccines work?", "List the planets of the solar system.",
]


def make_eval_set(project, n=6, **options):
    for text in PROMPTS[:n]:
        TaskFactory(project=project, conversation=[{"role": "user", "content": text}])
    eval_set = eval_sets.create_eval_set(project=project, enqueue=False, include_held_out=True, **options)
    return eval_sets.build_eval_set(eval_set_id=eval_set.pk)


def versions_at(server, *names):
    return [ModelVersion.objects.create(name=name, backend="openai", endpoint=server.base_url) for name in names]


def run_to_the_end(run):
    """Run every job of the run in this process, in the order a worker would, until none is pending."""
    while True:
        job = runs.run_jobs(run).filter(status=ModelJob.Status.PENDING).order_by("id").first()
        if job is None:
            break
        if job.kind == ModelJob.Kind.EVAL_GENERATION:
            run_generation(job_id=job.pk)
        else:
            run_arena_judging(job_id=job.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def voter(project):
    def make(role=Role.ANNOTATOR):
        user = UserFactory()
        MembershipFactory(project=project, user=user, role=role)
        return user

    return make
