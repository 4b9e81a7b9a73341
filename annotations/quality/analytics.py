"""Per-annotator analytics of one project (reads only): throughput, time per task, review outcome,
gold accuracy, agreement with peers, and how much of their work started from a model draft.

Definitions (also in README):
* throughput: submissions in the last ``days`` days, per day; and per active hour, where active
  time is the sum of the time the labelling page measured (``time_spent_ms``).
* median time per task: median ``time_spent_ms`` of all their submissions.
* acceptance rate: accepted / (accepted + rejected) of reviewed submissions (fixes count as accepted).
* gold accuracy: mean ``GoldScore.score`` (0..1), with the mean Kendall tau against gold rankings
  and the exact-match shares of flags and ratings beside it.
* agreement with peers: from ``agreement.agreement_report`` (mean tau-b with the other annotators of
  the same tasks, and alpha over those tasks).
* from a model draft: share of their demonstrations that used at least one draft, and the median
  character edit distance from the closest draft used (also relative to the reply's length).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import timedelta

from django.db import connection
from django.db.models import Aggregate, Avg, Count, FloatField, Q, Sum
from django.db.models.functions import Length
from django.utils import timezone

from ..models import Membership, Project, Submission, TaskKind
from .models import GoldScore


class Median(Aggregate):
    """PostgreSQL's ``percentile_cont(0.5)``: the median without pulling the rows into Python."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def annotator_analytics(*, project: Project, days: int = 7, annotator_id: int | None = None,
                        peers: dict[int, dict] | None = None, now=None) -> list[dict]:
    """One row per annotator and per other member who has submitted, sorted by username. ``peers`` is the
    ``by_annotator`` part of an agreement report, keyed by annotator id (optional: it costs a pass
    over the project's rankings)."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    subs = Submission.objects.filter(project=project)
    if annotator_id is not None:
        subs = subs.filter(annotator_id=annotator_id)
    aggregates = {
        "submissions": Count("id"),
        "recent": Count("id", filter=Q(created_at__gte=since)),
        "time_ms": Sum("time_spent_ms"),
        "accepted": Count("id", filter=Q(status=Submission.Status.ACCEPTED)),
        "rejected": Count("id", filter=Q(status=Submission.Status.REJECTED)),
        "pending_review": Count("id", filter=Q(status=Submission.Status.SUBMITTED, review_required=True)),
        "demonstrations": Count("id", filter=Q(kind=TaskKind.DEMONSTRATION)),
        "comparisons": Count("id", filter=Q(kind=TaskKind.COMPARISON)),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["median_time_ms"] = Median("time_spent_ms")
    rows = {r["annotator"]: r for r in subs.values("annotator").annotate(**aggregates).order_by()}
    if not postgres:
        times = defaultdict(list)
        for who, ms in subs.values_list("annotator", "time_spent_ms"):
            times[who].append(ms)
        for who, row in rows.items():
            row["median_time_ms"] = statistics.median(times[who])

    gold = {r["annotator"]: r for r in GoldScore.objects.filter(
        project=project, **({"annotator_id": annotator_id} if annotator_id else {})).values("annotator").annotate(
        items=Count("id"), accuracy=Avg("score"), ranking_tau=Avg("ranking_tau"), flags_exact=Avg("flags_exact"),
        ratings_exact=Avg("ratings_exact"), text_similarity=Avg("text_similarity")).order_by()}
    drafts = _draft_use(subs)

    members = Membership.objects.filter(project=project).select_related("user")
    if annotator_id is not None:
        members = members.filter(user_id=annotator_id)
    out = []
    for m in members:
        row = rows.get(m.user_id)
        # Everyone who submitted; of those who have not, the annotators (reviewers and admins may label).
        if row is None and m.role != "annotator" and annotator_id is None:
            continue
        row = row or {"submissions": 0, "recent": 0, "time_ms": 0, "accepted": 0, "rejected": 0, "pending_review": 0,
                      "demonstrations": 0, "comparisons": 0, "median_time_ms": None}
        reviewed = row["accepted"] + row["rejected"]
        hours = (row["time_ms"] or 0) / 3_600_000
        g = gold.get(m.user_id)
        d = drafts.get(m.user_id, {})
        p = (peers or {}).get(m.user_id)
        out.append({
            "annotator_id": m.user_id, "username": m.user.username, "role": m.role,
            "paused_at": m.paused_at, "paused_reason": m.paused_reason,
            "submissions": row["submissions"], "demonstrations": row["demonstrations"],
            "comparisons": row["comparisons"],
            "throughput": {"days": days, "submissions": row["recent"], "per_day": round(row["recent"] / days, 2),
                           "active_hours": round(hours, 2),
                           "per_active_hour": round(row["submissions"] / hours, 2) if hours else None},
            "median_time_ms": int(row["median_time_ms"]) if row["median_time_ms"] is not None else None,
            "review": {"accepted": row["accepted"], "rejected": row["rejected"], "pending": row["pending_review"],
                       "acceptance_rate": round(row["accepted"] / reviewed, 4) if reviewed else None},
            "gold": {"items": g["items"] if g else 0, "accuracy": _r(g and g["accuracy"]),
                     "ranking_tau": _r(g and g["ranking_tau"]), "flags_exact": _r(g and g["flags_exact"]),
                     "ratings_exact": _r(g and g["ratings_exact"]), "text_similarity": _r(g and g["text_similarity"])},
            "peers": ({"mean_tau": p["mean_tau_with_peers"], "pairs": p["pairs"], "alpha": p["alpha"]}
                      if p else {"mean_tau": None, "pairs": 0, "alpha": None}),
            "drafts": {"demonstrations": d.get("demonstrations", 0), "from_draft": d.get("from_draft", 0),
                       "share": d.get("share"), "median_edit_distance": d.get("median_edit_distance"),
                       "median_edit_ratio": d.get("median_edit_ratio")},
        })
    return sorted(out, key=lambda r: r["username"])


def _r(value) -> float | None:
    return None if value is None else round(value, 4)


def _draft_use(subs) -> dict[int, dict]:
    """Per annotator: demonstrations, how many used a draft, and the edit distance from the closest
    draft used (``draft_sources`` is stored at submit time: [{reply_id, edit_distance}])."""
    per: dict[int, dict] = defaultdict(lambda: {"demonstrations": 0, "from_draft": 0, "distances": [], "ratios": []})
    rows = subs.filter(kind=TaskKind.DEMONSTRATION).annotate(length=Length("reply__content")).values_list(
        "annotator_id", "draft_sources", "length")
    for who, sources, length in rows.iterator(chunk_size=5000):
        entry = per[who]
        entry["demonstrations"] += 1
        distances = [s.get("edit_distance") for s in (sources or []) if isinstance(s, dict)
                     and isinstance(s.get("edit_distance"), int)]
        if distances:
            entry["from_draft"] += 1
            closest = min(distances)
            entry["distances"].append(closest)
            if length:
                entry["ratios"].append(closest / length)
    out = {}
    for who, entry in per.items():
        n = entry["demonstrations"]
        out[who] = {
            "demonstrations": n, "from_draft": entry["from_draft"],
            "share": round(entry["from_draft"] / n, 4) if n else None,
            "median_edit_distance": statistics.median(entry["distances"]) if entry["distances"] else None,
            "median_edit_ratio": round(statistics.median(entry["ratios"]), 4) if entry["ratios"] else None,
        }
    return out


def gold_history(*, project: Project, annotator_id: int, limit: int = 50) -> list[GoldScore]:
    return list(GoldScore.objects.filter(project=project, annotator_id=annotator_id)
                .select_related("submission", "gold").order_by("-created_at", "-id")[:limit])
