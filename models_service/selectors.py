"""Reads of model output: AI-human agreement."""
from __future__ import annotations

import itertools
import math

from annotations.models import ModelVersion, Project, Submission, Task, TaskKind
from annotations.quality.metrics import kendall_tau_b, rank_positions

from .models import AIRanking, Critique


def compare_rankings(ai: list[list], human: list[list]) -> dict:
    """Pairwise agreement over the pairs the human ordered strictly, and Kendall's tau-b (ties
    handled) between the two rankings."""
    a, h = rank_positions(ai), rank_positions(human)
    ids = sorted(set(a) & set(h))
    strict = agree = ai_ties = 0
    for x, y in itertools.combinations(ids, 2):
        if h[x] == h[y]:
            continue
        strict += 1
        if a[x] == a[y]:
            ai_ties += 1
        elif (a[x] < a[y]) == (h[x] < h[y]):
            agree += 1
    tau = kendall_tau_b([a[i] for i in ids], [h[i] for i in ids]) if len(ids) >= 2 else math.nan
    return {"strict_pairs": strict, "agree": agree, "ai_ties": ai_ties, "tau": tau}


def ai_human_agreement(*, project: Project, model_version: ModelVersion | None = None) -> list[dict]:
    rankings = AIRanking.objects.filter(task__project=project, task__kind=TaskKind.COMPARISON,
                                        status=AIRanking.Status.DONE).select_related("model_version")
    if model_version is not None:
        rankings = rankings.filter(model_version=model_version)
    humans: dict[int, list[list[list]]] = {}
    # Gold tasks are scored against their reference, not counted as agreement with people.
    for task_id, ranking in Submission.objects.filter(project=project, kind=TaskKind.COMPARISON).exclude(
            status=Submission.Status.REJECTED).exclude(task__state=Task.State.GOLD).values_list("task_id", "ranking"):
        humans.setdefault(task_id, []).append(ranking)
    report: dict[int, dict] = {}
    for ai in rankings:
        row = report.setdefault(ai.model_version_id, {
            "model_version": ai.model_version.name, "tasks": 0, "comparisons": 0, "strict_pairs": 0, "agree": 0,
            "ai_ties": 0, "taus": []})
        human_rankings = humans.get(ai.task_id, [])
        if human_rankings:
            row["tasks"] += 1
        for human in human_rankings:
            result = compare_rankings(ai.ranking, human)
            row["comparisons"] += 1
            for key in ("strict_pairs", "agree", "ai_ties"):
                row[key] += result[key]
            if not math.isnan(result["tau"]):
                row["taus"].append(result["tau"])
    out = []
    for row in report.values():
        taus = row.pop("taus")
        pairs = row["strict_pairs"]
        row["pairwise_accuracy"] = round(row["agree"] / pairs, 4) if pairs else None
        row["ai_tie_share"] = round(row["ai_ties"] / pairs, 4) if pairs else None
        row["mean_kendall_tau"] = round(sum(taus) / len(taus), 4) if taus else None
        out.append(row)
    return sorted(out, key=lambda r: r["model_version"])


def critiques_for(*, submission: Submission):
    return Critique.objects.filter(submission=submission).select_related("model_version", "instruction_version")
