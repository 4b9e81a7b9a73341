"""Drafting throughput: the same prompts x n drafts x max_tokens through
  (a) the raw OpenAI-compatible HTTP API of the vLLM server (all requests at once),
  (b) the product's Celery drafting job (API-created job -> worker -> vLLM -> PostgreSQL),
  (c) the in-process transformers backend (batched generate, float32).
Prints tokens/s and the ratios (b)/(a) and (a)/(c). Goal: (b)/(a) >= 0.85.

    python bench/drafting.py [--prompts 64] [--n 4] [--max-tokens 128] [--skip-transformers]

Uses its own database (labelwork_bench_drafting, dropped afterwards), starts its own vLLM server
(the cached CPU venv and converted model) and Celery worker, all on loopback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "labelwork_bench_drafting"
PORT = 8021


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--concurrency", type=int, default=16, help="Requests in flight for (a) and (b).")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()

    db_url = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.dev", "DATABASE_URL": db_url,
           "REDIS_URL": "redis://127.0.0.1:6379/14", "MODEL_BASE_URL": f"http://127.0.0.1:{PORT}/v1",
           "MODEL_NAME": "bench-model", "DRAFT_CONCURRENCY": str(args.concurrency), "CRITIQUE_ON_SUBMIT": "false",
           "DEBUG": "false"}
    os.environ.update(env)
    _recreate_database()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from models_service.model_files import prepare_model
    from models_service.vllm_server import VllmServer, default_python

    prompts = [json.loads(line)["prompt"] for line in (ROOT / "demo" / "prompts.jsonl").read_text().splitlines()]
    prompts = [prompts[i % len(prompts)] + ("" if i < len(prompts) else f" (variant {i})") for i in range(args.prompts)]
    model_path = prepare_model()
    figures: dict = {"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens,
                     "concurrency": args.concurrency}

    server = VllmServer(model_path, port=PORT, python=default_python(), served_model_name="bench-model",
                        enforce_eager=True, max_model_len=4096)
    server.start()
    try:
        figures["vllm_start_s"] = round(server.wait_ready(timeout=900), 1)
        _raw_once(prompts[:4], args)  # warm-up, not measured
        figures["a_raw"] = _raw(prompts, args)
        print("a_raw", json.dumps(figures["a_raw"]), flush=True)  # partial results survive a timeout
        figures["b_job"] = _job(prompts, args, env)
        print("b_job", json.dumps(figures["b_job"]), flush=True)
    finally:
        server.stop()
    if not args.skip_transformers:
        figures["c_transformers"] = _transformers(model_path, prompts, args)
        print("c_transformers", json.dumps(figures["c_transformers"]), flush=True)
    a, b = figures["a_raw"]["tokens_per_s"], figures["b_job"]["tokens_per_s"]
    figures["ratio_b_over_a"] = round(b / a, 3)
    if "c_transformers" in figures:
        figures["ratio_a_over_c"] = round(a / figures["c_transformers"]["tokens_per_s"], 2)
    _drop_database()

    print()
    print(f"{'path':<34}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}")
    for key, label in (("a_raw", "(a) raw OpenAI API -> vLLM"), ("b_job", "(b) Celery drafting job"),
                       ("c_transformers", "(c) in-process transformers")):
        if key in figures:
            f = figures[key]
            print(f"{label:<34}{f['tokens']:>8}{f['seconds']:>9.1f}{f['tokens_per_s']:>10.1f}")
    print(f"(b)/(a) = {figures['ratio_b_over_a']}  (goal >= 0.85)")
    if "ratio_a_over_c" in figures:
        print(f"(a)/(c) = {figures['ratio_a_over_c']}")
    print(json.dumps(figures))


def _messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def _raw_once(prompts, args):
    import httpx

    for p in prompts:
        httpx.post(f"http://127.0.0.1:{PORT}/v1/chat/completions", timeout=300,
                   json={"model": "bench-model", "messages": _messages(p), "max_tokens": 16})


def _raw(prompts, args) -> dict:
    """The ceiling: the plain OpenAI-compatible API, the same concurrency as the job."""
    import httpx

    async def run():
        limits = httpx.Limits(max_connections=args.concurrency)
        semaphore = asyncio.Semaphore(args.concurrency)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:
            async def one(prompt):
                async with semaphore:
                    r = await http.post(f"http://127.0.0.1:{PORT}/v1/chat/completions", json={
                        "model": "bench-model", "messages": _messages(prompt), "n": args.n,
                        "max_tokens": args.max_tokens, "temperature": args.temperature, "top_p": 0.95})
                    r.raise_for_status()
                    return r.json()["usage"]["completion_tokens"]

            return await asyncio.gather(*(one(p) for p in prompts))

    start = time.perf_counter()
    tokens = sum(asyncio.run(run()))
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def _job(prompts, args, env) -> dict:
    """The product path: a job row, the queue, a real worker process, drafts stored in PostgreSQL."""
    from django.contrib.auth import get_user_model

    from annotations.models import CandidateReply
    from annotations.services.imports import import_file
    from annotations.services.projects import create_project
    from models_service.drafting import create_drafting_job
    from models_service.models import ModelJob
    from tests.processes import CeleryWorker

    import io

    user = get_user_model().objects.create_user("bench-admin")
    project = create_project(name="drafting bench", created_by=user)
    rows = "\n".join(json.dumps({"prompt": p}) for p in prompts).encode()
    assert import_file(project=project, stream=io.BytesIO(rows), fmt="jsonl").ok
    worker = CeleryWorker(database=env["DATABASE_URL"], redis_url=env["REDIS_URL"], concurrency=1,
                          log_path=Path("/tmp/bench-drafting-worker.log"), name="bench")
    worker.env.update({k: env[k] for k in ("MODEL_BASE_URL", "MODEL_NAME", "DRAFT_CONCURRENCY")})
    worker.env["DJANGO_SETTINGS_MODULE"] = "labelstudio_app.settings.dev"
    worker.start()
    try:
        start = time.perf_counter()
        job = create_drafting_job(project=project, created_by=user, n=args.n, max_tokens=args.max_tokens,
                                  temperature=args.temperature)
        while True:
            job.refresh_from_db()
            if job.status in (ModelJob.Status.DONE, ModelJob.Status.FAILED):
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    finally:
        worker.stop()
    assert job.status == "done" and job.failed == 0, job.error
    drafts = CandidateReply.objects.filter(task__project=project, source="model").count()
    assert drafts == len(prompts) * args.n, drafts
    return {"tokens": job.completion_tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(job.completion_tokens / seconds, 1), "drafts_stored": drafts}


def _transformers(model_path, prompts, args) -> dict:
    import torch

    from models_service.backends import TransformersBackend
    from models_service.client import Sampling

    torch.set_num_threads(os.cpu_count() or 1)
    backend = TransformersBackend(model_path=str(model_path), model="bench")
    sampling = Sampling(n=args.n, temperature=args.temperature, top_p=0.95, max_tokens=args.max_tokens)
    backend.chat_batch([_messages(prompts[0])], Sampling(n=1, max_tokens=4))  # load + warm-up
    batch = 16
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(prompts), batch):
        for row in backend.chat_batch([_messages(p) for p in prompts[i:i + batch]], sampling):
            tokens += sum(c.completion_tokens for c in row)
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "batch_prompts": batch}


def _admin_conn():
    import psycopg

    return psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)


def _recreate_database():
    with _admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def _drop_database():
    from django.db import connections

    connections.close_all()
    with _admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
