"""Reviewing submissions: accept, reject with a reason, or fix.

Reviewers see the submissions sampled for review (``Submission.review_required``, decided at
submit time by ``annotations.quality.sampling``); any submitted work may still be reviewed through
the API. Submissions on gold tasks are scored against the reference instead and cannot be reviewed.

A rejection takes the submission out of the task's count. What happens to the slot is a project
setting (``on_reject``):

* ``return`` (default): the work goes back to its annotator with the reason. Their lease of the
  task becomes active again (a new lease time, the current instructions), so the task shows up
  first when they next start labelling; the redone submission is always reviewed. If they skip,
  release or let it expire, the slot returns to the pool like any other.
* ``reassign``, or when the annotator can no longer work in the project: the slot goes back to
  the pool for someone else; the annotator still sees the decision and the reason.

A fix keeps the reviewer's corrected reply beside the original and accepts the submission (exports
use the corrected reply).
"""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..errors import DomainError, InvalidInput, NotFound, PermissionDenied
from ..models import CandidateReply, Lease, Membership, Project, Review, Role, Submission, Task, TaskKind
from ..quality import completion
from ..quality.rules import evaluate_rules
from .leases import LABELLING_ROLES, state_after

REVIEWERS = (Role.REVIEWER, Role.ADMIN)
MAX_REASON_CHARS = 5_000
MAX_FIX_CHARS = 50_000


class AlreadyReviewed(DomainError):
    code = "already_reviewed"
    status = 409


@transaction.atomic
def review_submission(*, submission_id: int, reviewer, decision: str, reason: str = "",
                      fixed_text: str | None = None) -> Review:
    submission = (Submission.objects.select_for_update(of=("self",), no_key=True)
                  .select_related("project", "reply", "task").filter(pk=submission_id).first())
    if submission is None:
        raise NotFound("No such submission.")
    project = submission.project
    role = Membership.objects.filter(project=project, user=reviewer).values_list("role", flat=True).first()
    if role not in REVIEWERS:
        raise PermissionDenied("Only reviewers and admins of this project review submissions.")
    if submission.annotator_id == reviewer.pk:
        raise PermissionDenied("Nobody reviews their own work.")
    if submission.status != Submission.Status.SUBMITTED:
        raise AlreadyReviewed(f"This submission was already {submission.status}.")
    if submission.task.state == Task.State.GOLD:
        raise InvalidInput("This is a gold task: its submissions are scored against the reference, not reviewed.",
                           field="decision")
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

    # Lock order submission -> lease -> task, the same lease -> task order as submit and reclaim.
    lease = Lease.objects.select_for_update(no_key=True).get(pk=submission.lease_id)
    now = timezone.now()
    counted = completion.counts_as_accepted(status=submission.status, review_required=submission.review_required)
    submission.status = (Submission.Status.REJECTED if decision == Review.Decision.REJECT
                         else Submission.Status.ACCEPTED)
    submission.save(update_fields=["status"])
    accepted_delta = int(submission.status == Submission.Status.ACCEPTED) - int(counted)
    overlap = project.overlap
    if decision == Review.Decision.REJECT and _returns_to_annotator(project, submission.annotator_id):
        # The slot stays with its annotator: the submission leaves the count, their lease comes back.
        lease.status = Lease.Status.ACTIVE
        lease.closed_at = None
        lease.expires_at = now + timedelta(seconds=project.lease_seconds)
        lease.instruction_version_id = project.current_instructions_id or lease.instruction_version_id
        lease.reason = ""
        lease.save(update_fields=["status", "closed_at", "expires_at", "instruction_version", "reason"])
        Task.objects.filter(pk=submission.task_id).update(
            submission_count=F("submission_count") - 1, lease_count=F("lease_count") + 1,
            state=state_after(overlap=overlap, lease_delta=1, submission_delta=-1),
            **completion.accepted_update(overlap=overlap, delta=accepted_delta, now=now))
    elif decision == Review.Decision.REJECT:
        Task.objects.filter(pk=submission.task_id).update(
            submission_count=F("submission_count") - 1, state=state_after(overlap=overlap, submission_delta=-1),
            **completion.accepted_update(overlap=overlap, delta=accepted_delta, now=now))
    elif accepted_delta:
        Task.objects.filter(pk=submission.task_id).update(
            **completion.accepted_update(overlap=overlap, delta=accepted_delta, now=now))
    review = Review.objects.create(submission=submission, reviewer=reviewer, decision=decision, reason=reason,
                                   fixed_reply=fixed)
    evaluate_rules(project=project, annotator_id=submission.annotator_id, metrics=("acceptance_rate",), now=now)
    return review


def _returns_to_annotator(project: Project, annotator_id: int) -> bool:
    if project.on_reject != Project.OnReject.RETURN:
        return False
    membership = Membership.objects.filter(project=project, user_id=annotator_id).only("role", "paused_at").first()
    return membership is not None and membership.role in LABELLING_ROLES and membership.paused_at is None
