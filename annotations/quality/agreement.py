"""Agreement between annotators on comparison tasks (reads only).

Who is compared: every submission on a comparison task that is not rejected and not on a gold task
(gold work is compared with its reference instead, see ``gold``). A task counts once at least two
annotators ranked it.

* Krippendorff's alpha, ordinal (``metrics.alpha_from_units``, the ``krippendorff`` package): for
  rankings the unit is one reply of one task and each annotator's value is its mid-rank (ties share
  the mean place); for ratings the unit is one (task, reply) per criterion, values 1-7.
* Mean pairwise Kendall tau-b: for every two annotators of a task, tau-b between their rankings
  (ties handled), averaged over all such pairs. A pair where one side tied everything has no tau
  and is counted as ``undefined_pairs``.

The same numbers per instruction version (only submissions made under that version are compared
with each other) and per annotator (alpha over the units of the tasks they ranked, every coder of
those tasks included; tau over the pairs they are part of).

Cost: one pass over the project's comparison submissions in task order with a server-side
cursor, about 50 microseconds of Python per submission (docs/benchmarks.md). Pages and the API use
``cached_agreement_report``: the report is kept in the cache under a signature of everything it
depends on (the project's submissions, rejections and gold tasks), so it is computed again only
after the data changed.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

import numpy as np
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Max, Q

from ..models import RATING_CRITERIA, Project, Submission, Task, TaskKind
from .metrics import alpha_from_patterns, kendall_tau_b_rows, mid_ranks

CHUNK = 5000


def comparison_rows(*, project: Project, instruction_version: int | None = None):
    subs = (Submission.objects.filter(project=project, kind=TaskKind.COMPARISON)
            .exclude(status=Submission.Status.REJECTED).exclude(task__state=Task.State.GOLD).exclude(ranking=[]))
    if instruction_version is not None:
        subs = subs.filter(instruction_version__number=instruction_version)
    return subs.order_by("task_id", "id").values_list("task_id", "annotator_id", "instruction_version__number",
                                                      "ranking", "ratings")


def _by_task(rows) -> Iterator[list[tuple]]:
    """Consecutive rows of one task, from rows ordered by task."""
    current: list[tuple] = []
    for row in rows.iterator(chunk_size=CHUNK):
        if current and current[0][0] != row[0]:
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def _pairs(ranks: list[dict]) -> list[tuple[int, int, list[float], list[float]]]:
    """(i, j, ranks of i, ranks of j) over the replies both ranked, for every two rankings given
    as {reply: rank}. Mid-ranks serve tau as well as group indexes would: tau-b only looks at the
    order of two values and whether they tie."""
    out = []
    for i in range(len(ranks)):
        for j in range(i + 1, len(ranks)):
            common = sorted(ranks[i].keys() & ranks[j].keys())
            if len(common) >= 2:
                out.append((i, j, [ranks[i][r] for r in common], [ranks[j][r] for r in common]))
    return out


def _taus(pairs: list[tuple[list, list]]) -> np.ndarray:
    """tau-b of every (x, y) pair, vectorised per length (tasks may differ in K)."""
    out = np.full(len(pairs), np.nan)
    by_len: dict[int, list[int]] = defaultdict(list)
    for n, (x, _y) in enumerate(pairs):
        by_len[len(x)].append(n)
    for idx in by_len.values():
        x = np.array([pairs[n][0] for n in idx], dtype=float)
        y = np.array([pairs[n][1] for n in idx], dtype=float)
        out[idx] = kendall_tau_b_rows(x, y)
    return out


class _TaskUnits:
    """What one task with two or more annotators contributes: ranking units (one per reply, the
    annotators' mid-ranks as a sorted tuple, which is all alpha needs of a unit), rating units per
    criterion, and the annotator pairs."""

    __slots__ = ("annotators", "rank", "ratings", "pairs")

    def __init__(self, subs: list[tuple]):
        """``subs``: (annotator, ranking, ratings) of one task."""
        self.annotators = [a for a, _, _ in subs]
        mids = [mid_ranks(ranking) for _, ranking, _ in subs]
        per_reply: dict[int, list[float]] = defaultdict(list)
        for m in mids:
            for rid, value in m.items():
                per_reply[rid].append(value)
        self.rank = [tuple(sorted(values)) for values in per_reply.values()]
        rated: dict[str, dict[str, list[int]]] = {c: defaultdict(list) for c in RATING_CRITERIA}
        for _, _, ratings in subs:
            for rid, scores in (ratings or {}).items():
                if isinstance(scores, dict):
                    for criterion, value in scores.items():
                        if criterion in rated:
                            rated[criterion][rid].append(value)
        self.ratings = {c: [tuple(sorted(v)) for v in by_reply.values()] for c, by_reply in rated.items()}
        self.pairs = [(self.annotators[i], self.annotators[j], x, y) for i, j, x, y in _pairs(mids)]


class _Accumulator:
    """Units (as pattern counts: alpha depends on a unit only through the multiset of its values)
    and pairs of one slice: the project, one version, one annotator's tasks."""

    def __init__(self):
        self.rank_units: Counter = Counter()
        self.rating_units: dict[str, Counter] = {c: Counter() for c in RATING_CRITERIA}
        self.pairs: list[tuple[list, list]] = []
        self.pair_annotators: list[tuple[int, int]] = []
        self.tasks = 0
        self.submissions = 0

    def add(self, units: _TaskUnits, *, ratings: bool = True, pairs: bool = True) -> None:
        self.tasks += 1
        self.submissions += len(units.annotators)
        self.rank_units.update(units.rank)
        if ratings:
            for criterion, values in units.ratings.items():
                self.rating_units[criterion].update(values)
        if pairs:
            for a, b, x, y in units.pairs:
                self.pairs.append((x, y))
                self.pair_annotators.append((a, b))

    def report(self, taus: np.ndarray | None = None) -> dict:
        taus = _taus(self.pairs) if taus is None else taus
        defined = taus[~np.isnan(taus)]
        alpha, units = alpha_from_patterns(self.rank_units)
        ratings = {}
        for criterion, rating_units in self.rating_units.items():
            r_alpha, r_units = alpha_from_patterns(rating_units)
            ratings[criterion] = {"alpha": _round(r_alpha), "units": r_units}
        return {
            "rankings": {"alpha": _round(alpha), "units": units, "tasks": self.tasks,
                         "submissions": self.submissions,
                         "mean_tau": _round(float(defined.mean())) if defined.size else None,
                         "pairs": int(defined.size), "undefined_pairs": int(taus.size - defined.size)},
            "ratings": ratings,
        }


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def agreement_report(*, project: Project, instruction_version: int | None = None,
                     per_annotator: bool = True) -> dict:
    overall = _Accumulator()
    by_version: dict[int, _Accumulator] = defaultdict(_Accumulator)
    by_annotator: dict[int, _Accumulator] = defaultdict(_Accumulator)
    for rows in _by_task(comparison_rows(project=project, instruction_version=instruction_version)):
        if len(rows) < 2:
            continue
        subs = [(annotator, ranking, ratings) for _t, annotator, _v, ranking, ratings in rows]
        units = _TaskUnits(subs)
        overall.add(units)
        versions: dict[int, list[tuple]] = defaultdict(list)
        for row, sub in zip(rows, subs, strict=True):
            versions[row[2]].append(sub)
        if len(versions) == 1:
            by_version[rows[0][2]].add(units)
        else:
            for number, group in versions.items():
                if len(group) >= 2:
                    by_version[number].add(_TaskUnits(group))
        if per_annotator:
            for annotator in units.annotators:
                by_annotator[annotator].add(units, ratings=False, pairs=False)
    taus = _taus(overall.pairs)
    report = {"instruction_version": instruction_version, **overall.report(taus),
              "by_instruction_version": [{"instruction_version": n, **acc.report()}
                                         for n, acc in sorted(by_version.items())]}
    if per_annotator:
        report["by_annotator"] = _annotator_rows(overall, taus, by_annotator)
    return report


CACHE_SECONDS = 24 * 3600


def report_signature(*, project: Project) -> str:
    """Changes whenever the report could: a submission added, one rejected (rejected work is left
    out), a task made gold or back (gold is left out). One aggregate over the project's rows."""
    subs = Submission.objects.filter(project=project, kind=TaskKind.COMPARISON).aggregate(
        n=Count("id"), last=Max("id"), rejected=Count("id", filter=Q(status=Submission.Status.REJECTED)))
    gold = Task.objects.filter(project=project, state=Task.State.GOLD).aggregate(n=Count("id"), s=Max("id"))
    from .models import GoldStandard

    changed = GoldStandard.objects.filter(project=project).aggregate(t=Max("updated_at"))["t"]
    return f"{subs['n']}.{subs['last']}.{subs['rejected']}.{gold['n']}.{gold['s']}.{changed and changed.timestamp()}"


def cached_agreement_report(*, project: Project, instruction_version: int | None = None) -> dict:
    # The creation time tells apart two projects that had the same id (a database rebuilt under a kept cache).
    key = (f"quality:agreement:v1:{project.pk}:{project.created_at.timestamp()}:{instruction_version}:"
           f"{report_signature(project=project)}")
    report = cache.get(key)
    if report is None:
        report = agreement_report(project=project, instruction_version=instruction_version)
        cache.set(key, report, CACHE_SECONDS)
    return report


def _annotator_rows(overall: _Accumulator, taus: np.ndarray, by_annotator: dict[int, _Accumulator]) -> list[dict]:
    per: dict[int, list[float]] = defaultdict(list)
    undefined: dict[int, int] = defaultdict(int)
    for (a, b), tau in zip(overall.pair_annotators, taus, strict=True):
        for who in (a, b):
            if math.isnan(tau):
                undefined[who] += 1
            else:
                per[who].append(float(tau))
    names = dict(get_user_model().objects.filter(pk__in=list(by_annotator)).values_list("pk", "username"))
    rows = []
    for annotator, acc in by_annotator.items():
        alpha, units = alpha_from_patterns(acc.rank_units)
        values = per.get(annotator, [])
        rows.append({"annotator_id": annotator, "username": names.get(annotator, str(annotator)),
                     "tasks": acc.tasks, "alpha": _round(alpha), "units": units,
                     "mean_tau_with_peers": _round(sum(values) / len(values)) if values else None,
                     "pairs": len(values), "undefined_pairs": undefined.get(annotator, 0)})
    return sorted(rows, key=lambda r: r["username"])


def task_mean_taus(rankings_by_task: Iterable[tuple[int, list]]) -> dict[int, float | None]:
    """{task_id: mean pairwise tau-b of its rankings} (None with fewer than two comparable ones);
    used by exports to keep only tasks whose annotators agree."""
    out: dict[int, float | None] = {}
    for task_id, rankings in rankings_by_task:
        taus = _taus([(x, y) for _i, _j, x, y in _pairs([mid_ranks(r) for r in rankings])])
        defined = taus[~np.isnan(taus)]
        out[task_id] = float(defined.mean()) if defined.size else None
    return out
