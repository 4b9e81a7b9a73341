"""Eval sets: prompts held out from the data a model was trained on.

The split is the export's (``annotations.exports.split``): a snapshot already puts every group of
exact and near-duplicate prompts on one side, train or eval, so its eval side is held out by
construction. That side is small (a fraction of what was labelled), so a set may also take the
project's other prompts - unlabelled ones, or ones labelled after the snapshot - but only those
that are not in the training files and not near duplicates of a training prompt: the same
all-MiniLM-L6-v2 embeddings and cosine threshold as the export. Candidates that are near
duplicates of each other are also collapsed to one, so the set does not count a prompt twice.

Without a snapshot there is no training data to leak from and every project prompt is a candidate.
The set is capped at ``max_prompts``, chosen by a seeded hash of the prompt key (deterministic).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations.errors import InvalidInput, NotFound
from annotations.exports import split
from annotations.models import DatasetSnapshot, Project, Task

from .models import EvalPrompt, EvalSet

MAX_PROMPTS = 5000
SIDES = ("train", "eval")


def _near_dup_limit() -> int:
    return int(getattr(settings, "EXPORT_NEAR_DUP_MAX_PROMPTS", 20_000))


@transaction.atomic
def create_eval_set(*, project: Project, created_by=None, name: str = "", snapshot: DatasetSnapshot | None = None,
                    max_prompts: int = 100, include_held_out: bool = True, near_dup_threshold: float | None = None,
                    seed: str = "", enqueue: bool = True) -> EvalSet:
    if snapshot is not None:
        if snapshot.project_id != project.pk:
            raise NotFound("No such snapshot in this project.")
        if snapshot.status != DatasetSnapshot.Status.READY:
            raise InvalidInput("The snapshot is not ready yet.", field="snapshot")
    if not 1 <= int(max_prompts) <= MAX_PROMPTS:
        raise InvalidInput(f"max_prompts must be 1-{MAX_PROMPTS}.", field="max_prompts")
    threshold = near_dup_threshold
    if threshold is None:
        threshold = (snapshot.options.get("near_dup_threshold") if snapshot else None) or 0.9
    if not 0.5 <= float(threshold) <= 1:
        raise InvalidInput("near_dup_threshold must be in [0.5, 1].", field="near_dup_threshold")
    eval_set = EvalSet.objects.create(
        project=project, name=name, snapshot=snapshot, created_by=created_by,
        options={"max_prompts": int(max_prompts), "include_held_out": bool(include_held_out),
                 "near_dup_threshold": float(threshold), "seed": seed})
    if enqueue:
        from annotations.queueing import enqueue_on_commit

        from .tasks import build_eval_set_task

        enqueue_on_commit(build_eval_set_task, eval_set.pk)  # a broker outage leaves it to the sweep
    return eval_set


def _prompt_of(fmt: str, row: dict) -> list[dict]:
    return row["messages"][:-1] if fmt == "sft" else row["prompt"]


def snapshot_prompts(snapshot: DatasetSnapshot) -> dict[str, dict[str, list]]:
    """{"train": {key: conversation}, "eval": {...}} from the snapshot's JSONL files."""
    out: dict[str, dict[str, list]] = {side: {} for side in SIDES}
    for fmt in snapshot.formats:
        for side in SIDES:
            path = Path(snapshot.path) / f"{fmt}.{side}.jsonl"
            if not path.exists():
                continue
            with path.open() as f:
                for line in f:
                    if line.strip():
                        conversation = _prompt_of(fmt, json.loads(line))
                        out[side].setdefault(split.prompt_key(conversation), conversation)
    return out


def _near_duplicates_of_reference(candidates: dict[str, str], reference: dict[str, str],
                                  threshold: float) -> set[str]:
    """Keys of ``candidates`` whose text has cosine >= threshold with any ``reference`` text."""
    if not candidates or not reference:
        return set()
    keys = list(candidates)
    cand = split.embed([candidates[k] for k in keys])
    ref = split.embed(list(reference.values()))
    hits = set()
    for start in range(0, len(keys), 1024):
        sims = cand[start:start + 1024] @ ref.T
        best = sims.max(dim=1).values
        hits.update(keys[start + i] for i in (best >= threshold).nonzero().flatten().tolist())
    return hits


def build_eval_set(*, eval_set_id: int) -> EvalSet:
    """Choose the prompts of a pending set. Safe to run twice: a ready set is returned as it is,
    an interrupted one is rebuilt."""
    eval_set = EvalSet.objects.select_related("snapshot").filter(pk=eval_set_id).first()
    if eval_set is None:
        raise NotFound(f"No eval set {eval_set_id}.")
    if eval_set.status == EvalSet.Status.READY:
        return eval_set
    EvalSet.objects.filter(pk=eval_set.pk).update(status=EvalSet.Status.RUNNING, error="")
    try:
        chosen, counts = _choose(eval_set)
        with transaction.atomic():
            EvalPrompt.objects.filter(eval_set=eval_set).delete()
            EvalPrompt.objects.bulk_create([
                EvalPrompt(eval_set=eval_set, conversation=conversation, prompt_key=key, source=source, task_id=task_id)
                for key, (conversation, source, task_id) in chosen.items()
            ])
            EvalSet.objects.filter(pk=eval_set.pk).update(status=EvalSet.Status.READY, counts=counts,
                                                          finished_at=timezone.now())
    except Exception as exc:
        EvalSet.objects.filter(pk=eval_set.pk).update(status=EvalSet.Status.FAILED, finished_at=timezone.now(),
                                                      error=f"{type(exc).__name__}: {exc}"[:5000])
        raise
    eval_set.refresh_from_db()
    return eval_set


def _choose(eval_set: EvalSet) -> tuple[dict, dict]:
    options = eval_set.options
    snapshot = eval_set.snapshot
    threshold = options.get("near_dup_threshold", 0.9)
    counts = {"snapshot_eval": 0, "held_out_candidates": 0, "dropped_exact_train": 0, "dropped_near_dup_train": 0,
              "dropped_near_dup_within": 0, "chosen": 0, "near_duplicates": "off"}
    candidates: dict[str, tuple[list, str, int | None]] = {}
    train: dict[str, list] = {}
    if snapshot is not None:
        sides = snapshot_prompts(snapshot)
        train = sides["train"]
        for key, conversation in sides["eval"].items():
            if key in train:  # cannot happen with the export's split; kept as a guard
                counts["dropped_exact_train"] += 1
                continue
            candidates[key] = (conversation, EvalPrompt.Source.SNAPSHOT_EVAL, None)
        counts["snapshot_eval"] = len(candidates)
    held_out: dict[str, tuple[list, str, int]] = {}
    # Every project prompt is read: the snapshot's eval prompts also learn their task id here.
    take_held_out = options.get("include_held_out", True) or snapshot is None
    exact_train: set[str] = set()
    source = EvalPrompt.Source.HELD_OUT if snapshot is not None else EvalPrompt.Source.PROJECT
    for task_id, conversation in Task.objects.filter(project=eval_set.project).order_by("id").values_list(
            "id", "conversation").iterator(chunk_size=2000):
        conversation = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                        for m in conversation]
        key = split.prompt_key(conversation)
        if key in candidates:
            if candidates[key][2] is None:
                candidates[key] = (candidates[key][0], candidates[key][1], task_id)
        elif not take_held_out:
            continue
        elif key in train:
            exact_train.add(key)
        elif key not in held_out:
            held_out[key] = (conversation, source, task_id)
    counts["held_out_candidates"] = len(held_out)
    counts["dropped_exact_train"] += len(exact_train)
    everything = {**held_out, **candidates}
    if len(everything) + len(train) > _near_dup_limit():
        # Too many to embed: only the snapshot's own eval side is safe without the check.
        counts["near_duplicates"] = f"skipped: more than {_near_dup_limit()} prompts; held-out prompts left out"
        counts["held_out_dropped_unchecked"] = len(held_out)
        everything = dict(candidates)
    elif len(everything) > 1 or (held_out and train):
        texts = {key: split.prompt_text(value[0]) for key, value in everything.items()}
        near_train = _near_duplicates_of_reference({k: texts[k] for k in held_out},
                                                   {k: split.prompt_text(v) for k, v in train.items()}, threshold)
        counts["dropped_near_dup_train"] = len(near_train)
        for key in near_train:
            everything.pop(key)
        # one prompt per cluster of near duplicates among the candidates; the snapshot's eval
        # prompts are preferred as the one kept
        clusters = split.near_duplicate_keys([(k, texts[k]) for k in everything], threshold=threshold)
        keep: dict[str, str] = {}
        for key in sorted(everything, key=lambda k: (everything[k][1] != EvalPrompt.Source.SNAPSHOT_EVAL, k)):
            leader = clusters.get(key, key)
            if leader in keep:
                counts["dropped_near_dup_within"] += 1
                everything.pop(key)
            else:
                keep[leader] = key
        counts["near_duplicates"] = f"embeddings, cosine >= {threshold}"
    seed = options.get("seed", "")
    order = sorted(everything, key=lambda k: hashlib.sha256(f"{seed}{k}".encode()).hexdigest())
    chosen = {key: everything[key] for key in order[: options.get("max_prompts", 100)]}
    counts["chosen"] = len(chosen)
    counts["chosen_by_source"] = {}
    for _conversation, source, _task in chosen.values():
        counts["chosen_by_source"][source] = counts["chosen_by_source"].get(source, 0) + 1
    return chosen, counts
