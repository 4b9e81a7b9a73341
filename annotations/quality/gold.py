"""Gold tasks: an admin gives a task a reference answer; from then on the task is served only
through the gold path (``serving.serve_gold``), every submission on it is scored against the
reference, and it stays out of completion, agreement and exports.

Scores are stored (``GoldScore``) in the submission's own transaction, so an annotator's gold
accuracy is one indexed aggregate and rules can act on it at once; changing the reference
rescores every submission of the task.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..errors import InvalidInput, NotFound
from ..models import Project, Submission, Task, TaskKind
from ..services import audit
from ..services.leases import state_after
from ..services.submissions import MAX_REPLY_CHARS, validate_flags, validate_ranking, validate_ratings
from . import completion, metrics
from .models import GoldScore, GoldStandard


@transaction.atomic
def set_gold(*, project: Project, task_id: int, created_by, ranking=None, ratings=None, flags=None,
             text: str | None = None, note: str = "", from_submission_id: int | None = None) -> GoldStandard:
    """Make a task gold with this reference, or replace its reference. With ``from_submission_id``
    the reference is copied from that submission (its ranking, ratings, flags or text)."""
    task = Task.objects.select_for_update(no_key=True).filter(project=project, pk=task_id).first()
    if task is None:
        raise NotFound("No such task in this project.")
    if task.kind not in (TaskKind.DEMONSTRATION, TaskKind.COMPARISON):
        raise InvalidInput("Only demonstrations and comparisons can be gold tasks.", field="task")
    source = None
    if from_submission_id is not None:
        source = Submission.objects.select_related("reply").filter(project=project, task=task,
                                                                   pk=from_submission_id).first()
        if source is None:
            raise InvalidInput("That submission is not a submission of this task.", field="from_submission")
        if source.status == Submission.Status.REJECTED:
            raise InvalidInput("A rejected submission cannot be the reference.", field="from_submission")
        if task.kind == TaskKind.COMPARISON:
            ranking, ratings, flags = source.ranking, source.ratings or None, source.flags or {}
        else:
            text = _fixed_or_own_text(source)
    reference = _validated_reference(task, ranking=ranking, ratings=ratings, flags=flags, text=text)
    gold, _ = GoldStandard.objects.update_or_create(
        task=task, defaults={"project": project, "created_by": created_by, "note": (note or "")[:5000],
                             "source_submission": source, **reference})
    if task.state != Task.State.GOLD:
        Task.objects.filter(pk=task.pk).update(state=Task.State.GOLD, completed_at=None)
    scored = rescore(gold=gold)
    audit.record(action=audit.Action.GOLD_SET, actor=created_by, project=project, target=f"task {task.pk}",
                 details={"from_submission": source.pk if source else None, "scored": scored})
    return gold


def gold_tasks(*, project: Project, task_id: int | None = None):
    """The project's gold references with how often and how well they were answered."""
    from django.db.models import Avg, Count

    rows = GoldStandard.objects.filter(project=project).select_related("task", "created_by").annotate(
        scored=Count("scores"), mean_score=Avg("scores__score")).order_by("-updated_at")
    return rows.filter(task_id=task_id) if task_id is not None else rows


def _fixed_or_own_text(submission: Submission) -> str:
    fix = submission.reviews.filter(decision="fix").select_related("fixed_reply").order_by("-id").first()
    if fix is not None and fix.fixed_reply is not None:
        return fix.fixed_reply.content
    return submission.reply.content if submission.reply else ""


def _validated_reference(task: Task, *, ranking, ratings, flags, text) -> dict:
    if task.kind == TaskKind.COMPARISON:
        reply_ids = set(task.replies.filter(for_ranking=True).values_list("pk", flat=True))
        if ranking in (None, []):
            raise InvalidInput("A gold comparison needs a reference ranking.", field="ranking")
        return {"ranking": validate_ranking(ranking, reply_ids),
                "ratings": validate_ratings(ratings, reply_ids) or None if ratings else None,
                "flags": validate_flags(flags, reply_ids) if flags is not None else None,
                "text": ""}
    text = (text or "").replace("\r\n", "\n")
    if not text.strip():
        raise InvalidInput("A gold demonstration needs a reference reply.", field="text")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInput(f"The reference is longer than {MAX_REPLY_CHARS} characters.", field="text")
    return {"ranking": None, "ratings": None, "flags": None, "text": text}


@transaction.atomic
def unset_gold(*, project: Project, task_id: int, actor=None) -> Task:
    """The task goes back to the normal pool; its submissions count again like any others."""
    task = Task.objects.select_for_update(no_key=True).filter(project=project, pk=task_id).first()
    if task is None or not GoldStandard.objects.filter(task=task).exists():
        raise NotFound("No such gold task in this project.")
    GoldStandard.objects.filter(task=task).delete()  # its scores go with it
    Task.objects.filter(pk=task.pk).update(state=Task.State.OPEN)
    Task.objects.filter(pk=task.pk).update(state=state_after(overlap=project.overlap))
    completion.recount_task(task=task, overlap=project.overlap, now=timezone.now())
    audit.record(action=audit.Action.GOLD_UNSET, actor=actor, project=project, target=f"task {task.pk}")
    task.refresh_from_db()
    return task


def rescore(*, gold: GoldStandard) -> int:
    subs = Submission.objects.filter(task_id=gold.task_id).exclude(status=Submission.Status.REJECTED)
    if gold.source_submission_id:
        subs = subs.exclude(pk=gold.source_submission_id)
    GoldScore.objects.filter(gold=gold).exclude(submission__in=subs).delete()
    n = 0
    for submission in subs.select_related("reply"):
        score_submission(submission=submission, gold=gold)
        n += 1
    return n


def score_submission(*, submission: Submission, gold: GoldStandard | None = None) -> GoldScore | None:
    gold = gold or GoldStandard.objects.filter(task_id=submission.task_id).first()
    if gold is None or submission.pk == gold.source_submission_id:
        return None
    if submission.kind == TaskKind.COMPARISON:
        reply_ids = [rid for group in (gold.ranking or []) for rid in group]
        parts = metrics.gold_score(reference_ranking=gold.ranking, ranking=submission.ranking,
                                   reference_ratings=gold.ratings, ratings=submission.ratings,
                                   reference_flags=gold.flags, flags=submission.flags, reply_ids=reply_ids)
    else:
        parts = metrics.gold_score(reference_text=gold.text,
                                   text=submission.reply.content if submission.reply_id else "")
    score, _ = GoldScore.objects.update_or_create(
        submission=submission,
        defaults={"gold": gold, "project_id": submission.project_id, "annotator_id": submission.annotator_id,
                  "created_at": submission.created_at, **parts})
    return score


def after_gold_submission(*, submission: Submission) -> GoldScore | None:
    """Called by the submit service inside its transaction for a submission on a gold task: score
    it, then let the project's rules look at the annotator's gold accuracy."""
    from .rules import evaluate_rules

    score = score_submission(submission=submission)
    if score is not None:
        evaluate_rules(project=submission.project, annotator_id=submission.annotator_id,
                       metrics=("gold_accuracy", "gold_ranking_tau"))
    return score

