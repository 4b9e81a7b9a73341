"""Reviewing submissions: accept, reject with a reason, or fix.

A rejection frees the task's slot (its submission no longer counts), so the task goes back to the
pool for someone else; the annotator sees the decision and the reason. A fix keeps the reviewer's
corrected reply beside the original and accepts the submission.
"""
from __future__ import annotations

from django.db import transaction
from django.db.models import F

from ..errors import DomainError, InvalidInput, NotFound, PermissionDenied
from ..models import CandidateReply, Membership, Review, Role, Submission, Task, TaskKind
from .leases import state_after

REVIEWERS = (Role.REVIEWER, Role.ADMIN)
MAX_REASON_CHARS = 5_000
MAX_FIX_CHARS = 50_000


class AlreadyReviewed(DomainError):
    code = "already_reviewed"
    status = 409


@transaction.atomic
def review_submission(*, submission_id: int, reviewer, decision: str, reason: str = "",
                      fixed_text: str | None = None) -> Review:
    submission = Submission.objects.select_for_update(of=("self",)).select_related("project", "reply").filter(
        pk=submission_id).first()
    if submission is None:
        raise NotFound("No such submission.")
    role = Membership.objects.filter(project=submission.project, user=reviewer).values_list("role", flat=True).first()
    if role not in REVIEWERS:
        raise PermissionDenied("Only reviewers and admins of this project review submissions.")
    if submission.annotator_id == reviewer.pk:
        raise PermissionDenied("Nobody reviews their own work.")
    if submission.status != Submission.Status.SUBMITTED:
        raise AlreadyReviewed(f"This submission was already {submission.status}.")
    reason = (reason or "").strip()
    if decision not in Review.Decision.values:
        raise InvalidInput(f"decision must be one of {', '.join(Review.Decision.values)}.", field="decision")
    if decision == Review.Decision.REJECT and not reason:
        raise InvalidInput("Say why the work is rejected: the annotator will read it.", field="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"The reason is longer than {MAX_REASON_CHARS} characters.", field="reason")

    fixed = None
    if decision == Review.Decision.FIX:
        if submission.kind != TaskKind.DEMONSTRATION:
            raise InvalidInput("Only demonstrations can be fixed; reject a ranking with a reason instead.",
                               field="decision")
        text = (fixed_text or "").replace("\r\n", "\n")
        if not text.strip() or len(text) > MAX_FIX_CHARS:
            raise InvalidInput(f"The fixed reply must be 1 to {MAX_FIX_CHARS} characters.", field="text")
        fixed = CandidateReply.objects.create(task_id=submission.task_id, content=text,
                                              source=CandidateReply.Source.HUMAN, parent=submission.reply,
                                              created_by=reviewer)

    submission.status = (Submission.Status.REJECTED if decision == Review.Decision.REJECT
                         else Submission.Status.ACCEPTED)
    submission.save(update_fields=["status"])
    if decision == Review.Decision.REJECT:
        overlap = submission.project.overlap
        Task.objects.filter(pk=submission.task_id).update(
            submission_count=F("submission_count") - 1, state=state_after(overlap=overlap, submission_delta=-1))
    return Review.objects.create(submission=submission, reviewer=reviewer, decision=decision, reason=reason,
                                 fixed_reply=fixed)
