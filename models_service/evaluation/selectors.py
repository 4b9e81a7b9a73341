"""Reads: eval runs with their jobs and counts, and the leaderboard.

The leaderboard has two boards built the same way, one from people's votes and one from the
judge's, and how often the two agree on the battles both voted on. Each board: Bradley-Terry
ratings with bootstrap 95 % intervals (``bradley_terry``), online Elo for comparison (``elo``),
per-model counts, and the pairwise win-rate and battle-count matrices.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from annotations.models import ModelVersion, Project

from . import bradley_terry, elo
from .models import BattleVote, Choice, EvalRun, JudgeVote

SCORE = {Choice.A: 1.0, Choice.B: 0.0, Choice.TIE: 0.5}
CATEGORIES = (Choice.A, Choice.B, Choice.TIE)


@dataclass(frozen=True)
class Outcome:
    battle: int
    left: int  # model version ids
    right: int
    choice: str
    at: datetime


def runs_for(*, project: Project):
    return EvalRun.objects.filter(project=project).select_related("eval_set", "judge_model").prefetch_related(
        "model_versions")


def _human(project: Project, run_ids) -> list[Outcome]:
    votes = BattleVote.objects.filter(battle__run__project=project, voted_at__isnull=False)
    if run_ids:
        votes = votes.filter(battle__run_id__in=run_ids)
    rows = votes.order_by("voted_at", "id").values_list(
        "battle_id", "battle__left__model_version_id", "battle__right__model_version_id", "choice", "voted_at")
    return [Outcome(*row) for row in rows]


def _judge(project: Project, run_ids) -> list[Outcome]:
    votes = JudgeVote.objects.filter(battle__run__project=project)
    if run_ids:
        votes = votes.filter(battle__run_id__in=run_ids)
    rows = votes.order_by("created_at", "id").values_list(
        "battle_id", "battle__left__model_version_id", "battle__right__model_version_id", "choice", "created_at")
    return [Outcome(*row) for row in rows]


def board(outcomes: list[Outcome], models: list[ModelVersion], *, bootstrap: int, seed: int) -> dict:
    index = {m.pk: i for i, m in enumerate(models)}
    n = len(models)
    wins = [[0] * n for _ in range(n)]  # wins[i][j]: i beat j
    ties = [[0] * n for _ in range(n)]
    both_bad = [[0] * n for _ in range(n)]
    first, second, score = [], [], []
    for o in outcomes:
        i, j = index[o.left], index[o.right]
        if o.choice == Choice.BOTH_BAD:
            both_bad[i][j] += 1
            both_bad[j][i] += 1
            continue
        if o.choice == Choice.A:
            wins[i][j] += 1
        elif o.choice == Choice.B:
            wins[j][i] += 1
        else:
            ties[i][j] += 1
            ties[j][i] += 1
        first.append(i)
        second.append(j)
        score.append(SCORE[o.choice])
    fitted = bradley_terry.rate(n, first, second, score, bootstrap=bootstrap, seed=seed) if first else None
    online = elo.online_elo(n, zip(first, second, score))
    rows = []
    for m, i in ((m, index[m.pk]) for m in models):
        played = sum(wins[i][j] + wins[j][i] + ties[i][j] for j in range(n))
        row = {
            "model": m.name, "model_id": m.pk,
            "rating": None, "ci_low": None, "ci_high": None, "elo": None,
            "battles": played + sum(both_bad[i]), "wins": sum(wins[i]), "losses": sum(wins[j][i] for j in range(n)),
            "ties": sum(ties[i]), "both_bad": sum(both_bad[i]),
        }
        if fitted is not None and played:
            row.update(rating=round(float(fitted.ratings[i]), 1), ci_low=round(float(fitted.ci_low[i]), 1),
                       ci_high=round(float(fitted.ci_high[i]), 1), elo=round(online[i], 1))
        rows.append(row)
    rows.sort(key=lambda r: (r["rating"] is None, -(r["rating"] or 0), r["model"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["rating"] is not None else None
    names = [m.name for m in models]
    win_rate = [[None if i == j or not (wins[i][j] + wins[j][i] + ties[i][j])
                 else round((wins[i][j] + 0.5 * ties[i][j]) / (wins[i][j] + wins[j][i] + ties[i][j]), 4)
                 for j in range(n)] for i in range(n)]
    counts = [[0 if i == j else wins[i][j] + wins[j][i] + ties[i][j] + both_bad[i][j] for j in range(n)]
              for i in range(n)]
    components = comparison_components(n, first, second)
    return {"votes": len(outcomes), "votes_in_fit": len(first),
            # Ratings are comparable only within one connected part of the comparison graph (the
            # fit centres each part on 1000 on its own): say when there is more than one.
            "connected": len(components) <= 1, "components": [[names[i] for i in c] for c in components],
            "both_bad_excluded": sum(1 for o in outcomes if o.choice == Choice.BOTH_BAD),
            "models": rows, "matrix_models": names, "win_rate": win_rate, "battle_counts": counts}


def comparison_components(n: int, first: list[int], second: list[int]) -> list[list[int]]:
    """The connected parts of the graph "these two models met in a battle" (models in the fit
    only), each sorted, in order of their smallest member."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(first, second):
        parent[root(i)] = root(j)
    parts: dict[int, list[int]] = defaultdict(list)
    for i in sorted(set(first) | set(second)):
        parts[root(i)].append(i)
    return sorted(parts.values())


def agreement(human: list[Outcome], judge: list[Outcome]) -> dict:
    """Each person's vote against the judge's vote on the same battle ("both bad" votes left out:
    the judge has no such answer). Exact agreement over A / B / tie, agreement where both picked a
    side, and Cohen's kappa."""
    judged: dict[int, list[str]] = defaultdict(list)
    for o in judge:
        judged[o.battle].append(o.choice)
    pairs = [(h.choice, j) for h in human if h.choice != Choice.BOTH_BAD for j in judged.get(h.battle, [])]
    decisive = [(h, j) for h, j in pairs if h != Choice.TIE and j != Choice.TIE]
    out = {"compared": len(pairs), "agree": sum(h == j for h, j in pairs),
           "decisive_compared": len(decisive), "decisive_agree": sum(h == j for h, j in decisive)}
    out["rate"] = round(out["agree"] / len(pairs), 4) if pairs else None
    out["decisive_rate"] = round(out["decisive_agree"] / len(decisive), 4) if decisive else None
    out["cohen_kappa"] = None
    if pairs:
        n = len(pairs)
        hc, jc = Counter(h for h, _ in pairs), Counter(j for _, j in pairs)
        expected = sum(hc[c] * jc[c] for c in CATEGORIES) / (n * n)
        observed = out["agree"] / n
        out["cohen_kappa"] = round((observed - expected) / (1 - expected), 4) if expected < 1 else None
    return out


def leaderboard(*, project: Project, run_ids=None, bootstrap: int = 1000, seed: int = 0) -> dict:
    runs = list(runs_for(project=project).filter(pk__in=run_ids) if run_ids else runs_for(project=project))
    models = sorted({m.pk: m for r in runs for m in r.model_versions.all()}.values(), key=lambda m: m.pk)
    human, judge = _human(project, run_ids), _judge(project, run_ids)
    judges = sorted({r.judge_model.name for r in runs if r.judge_model})
    return {
        "runs": [r.pk for r in runs],
        "models": [{"id": m.pk, "name": m.name, "adapter": bool(m.adapter_path)} for m in models],
        "human": board(human, models, bootstrap=bootstrap, seed=seed),
        "judge": {**board(judge, models, bootstrap=bootstrap, seed=seed), "judges": judges},
        "agreement": agreement(human, judge),
        "method": {
            "rating": "Bradley-Terry, logistic regression by Newton's method with ridge "
                      f"{bradley_terry.DEFAULT_RIDGE} (finite under perfect separation; centres the ratings)",
            "scale": "1000 + 400 * log10(odds): 400 points = 10:1; mean rating of the models in the fit = 1000",
            "ties": "half a win each way",
            "components": "each connected part of the comparison graph is centred on 1000 on its own; ratings "
                          "in different parts are not comparable (connected: false)",
            "both_bad": "left out of the fit, counted on the board",
            "ci": f"95 % percentile bootstrap over votes, {bootstrap} resamples, seed {seed}",
            "elo": f"online Elo, K={elo.DEFAULT_K}, start 1000, votes in time order (order-dependent)",
        },
    }
