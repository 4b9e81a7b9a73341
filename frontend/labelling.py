"""The labelling page of one lease and the 'I have read the instructions' acknowledgement.

The page only renders; submit, skip and release go from the browser to the REST API
(``/api/projects/<id>/leases/<lease_id>/...``) with the session cookie and CSRF header, so the
rules live in one place, the services behind that API."""
from __future__ import annotations

import random
import string

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from annotations import selectors
from annotations.models import (
    FLAG_CHOICES,
    RATING_CRITERIA,
    CandidateReply,
    InstructionVersion,
    Lease,
    Submission,
    TaskKind,
)
from annotations.permissions import ALL_ROLES, LABELLERS

from .access import membership_or_404, project_page
from .models import InstructionAcknowledgement
from .rendering import line_diff

# A lease that ran out can still be submitted while its slot is free (the service decides), so the
# page stays open for it; a lease that was submitted, skipped or released is finished.
OPEN_STATUSES = (Lease.Status.ACTIVE, Lease.Status.EXPIRED)
SKIP_REASONS = ("Instructions unclear for this task", "Not my language or expertise", "Harmful or disturbing content",
                "Task is broken or empty")


def instruction_context(*, project, user, base_version: InstructionVersion) -> dict:
    """What the instructions panel shows: the version this work is done under and, when the
    project has published something newer than I last confirmed, a banner with the line diff."""
    ack = InstructionAcknowledgement.objects.select_related("version").filter(user=user, project=project).first()
    current = project.current_instructions
    shown = base_version
    if ack and ack.version.number > shown.number:
        shown = ack.version
    banner = None
    if current and (ack is None or ack.version.number < current.number):
        since = ack.version if ack else (base_version if base_version.number < current.number else None)
        banner = {
            "current": current,
            "since": since,
            "diff": line_diff(since.body, current.body) if since else [],
        }
    return {"instructions": shown, "instruction_banner": banner}


def ranking_order(replies, lease_id: int) -> list:
    """The replies to rank in the order the annotator of ``lease_id`` saw them (A, B, C...): blind
    and in a per-lease order, so position does not favour the same reply for everyone. The review
    page uses the same order, so a rationale that says "A" means the same reply there."""
    to_rank = sorted((r for r in replies if r.for_ranking), key=lambda r: r.pk)
    random.Random(lease_id).shuffle(to_rank)
    return to_rank


@project_page(get=LABELLERS)
def label(request, project_id: int, lease_id: int):
    membership = membership_or_404(request, project_id, LABELLERS)
    project = membership.project
    lease = (
        Lease.objects.select_related("instruction_version")
        .filter(project=project, annotator=request.user, pk=lease_id).first()
    )
    if lease is None:  # someone else's lease, or none at all: the same answer
        raise Http404("No such lease.")
    if lease.status not in OPEN_STATUSES:
        messages.info(request, f"That task is already {lease.status}.")
        return redirect("home")
    task = selectors.task_with_replies(task_id=lease.task_id)
    if task.kind == TaskKind.RED_TEAM:  # chatting with the model has its own page
        return redirect("red-team-chat", project_id=project.pk, lease_id=lease.pk)
    replies = list(task.replies.all())
    drafts = [r for r in replies if not r.for_ranking and r.source == CandidateReply.Source.MODEL]
    to_rank = ranking_order(replies, lease.pk)
    letters = string.ascii_uppercase
    context = {
        "project": project,
        "membership": membership,
        "lease": lease,
        "task": task,
        "is_comparison": task.kind == TaskKind.COMPARISON,
        "conversation": [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in (task.conversation or []) if isinstance(m, dict)
        ],
        "drafts": [{"letter": letters[i % 26], "reply": r} for i, r in enumerate(drafts)],
        "replies": [{"letter": letters[i % 26], "reply": r} for i, r in enumerate(to_rank)],
        "rank_numbers": range(1, len(to_rank) + 1),
        "criteria": RATING_CRITERIA,
        "flags": [(f, f.replace("_", " ").capitalize()) for f in FLAG_CHOICES],
        "scores": range(1, 8),
        "skip_reasons": SKIP_REASONS,
        "api_base": f"/api/projects/{project.pk}/leases/{lease.pk}/",
        "returned": returned_work(lease, {r.pk: letters[i % 26] for i, r in enumerate(to_rank)}),
        **instruction_context(project=project, user=request.user, base_version=lease.instruction_version),
    }
    return render(request, "frontend/label.html", context)


def returned_work(lease, letter_of: dict[int, str]) -> dict | None:
    """When a reviewer returned this task to redo (project.on_reject = "return"): their reason and
    what was sent before, shown above the work so the redo can answer the reason."""
    rejected = (Submission.objects.filter(lease=lease, status=Submission.Status.REJECTED)
                .select_related("reply").order_by("-id").first())
    if rejected is None:
        return None
    review = rejected.reviews.select_related("reviewer").order_by("-id").first()
    summary = " > ".join(" = ".join(letter_of.get(int(rid), "?") for rid in group) for group in (rejected.ranking or []))
    return {"reason": review.reason if review else "", "reviewer": review.reviewer.username if review else "",
            "text": rejected.reply.content if rejected.reply_id else "", "ranking": summary}


@project_page(post=ALL_ROLES)
def acknowledge_instructions(request, project_id: int):
    membership = membership_or_404(request, project_id, ALL_ROLES)
    project = membership.project
    number = request.POST.get("version", "")
    version = get_object_or_404(InstructionVersion, project=project, number=int(number) if number.isdigit() else 0)
    ack, created = InstructionAcknowledgement.objects.get_or_create(
        user=request.user, project=project, defaults={"version": version})
    if not created and ack.version.number < version.number:
        ack.version = version
        ack.save(update_fields=["version", "acknowledged_at"])
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("home")
    return redirect(target)
