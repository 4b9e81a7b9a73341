"""The review queue: reviewers and admins accept, reject (with a reason) or fix the oldest
submission that waits for a decision, next to the model's critique of it.

The decision is a plain form POST to this view, which calls ``annotations.services.reviews`` (the
same service as ``POST /api/projects/<id>/submissions/<sid>/review/``), so the rules live in one
place; after a decision the page redirects to itself and shows the next item."""
from __future__ import annotations

import string

from django.contrib import messages
from django.shortcuts import redirect, render

from annotations import selectors
from annotations.errors import DomainError, InvalidInput
from annotations.models import FLAG_CHOICES, RATING_CRITERIA, Lease, Role, TaskKind
from annotations.services import reviews as review_service
from models_service import selectors as model_selectors

from .access import membership_or_404, project_page
from .labelling import ranking_order

REVIEWERS = frozenset({Role.ADMIN, Role.REVIEWER})
DONE_WORDS = {"accept": "Accepted", "reject": "Rejected and returned to the annotator", "fix": "Fixed and accepted"}


@project_page(get=REVIEWERS, post=REVIEWERS)
def review(request, project_id: int):
    membership = membership_or_404(request, project_id, REVIEWERS)
    project = membership.project
    queue = selectors.review_queue(project=project, reviewer=request.user)
    form = {"reason": "", "text": None, "error": "", "field": "", "decision": ""}
    if request.method == "POST":
        submission_id = request.POST.get("submission", "")
        decision = request.POST.get("decision", "")
        form.update(reason=request.POST.get("reason", ""), text=request.POST.get("text"))
        # Only this project's submissions: an id from elsewhere is the same "not here" as a missing one.
        if not submission_id.isdigit() or not project.submissions.filter(pk=int(submission_id)).exists():
            messages.error(request, "No such submission in this project.")
            return redirect("review", project_id=project.pk)
        try:
            review_service.review_submission(submission_id=int(submission_id), reviewer=request.user,
                                             decision=decision, reason=form["reason"], fixed_text=form["text"])
        except review_service.AlreadyReviewed as exc:
            messages.info(request, f"Submission {submission_id}: {exc.message} Here is the next one.")
            return redirect("review", project_id=project.pk)
        except InvalidInput as exc:
            # Stay on the same item with what was typed, and say what is missing.
            form.update(error=exc.message, field=exc.details.get("field", ""), decision=decision)
            queue = queue.filter(pk=int(submission_id))
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("review", project_id=project.pk)
        else:
            messages.success(request, f"{DONE_WORDS.get(decision, decision)}: submission {submission_id}.")
            return redirect("review", project_id=project.pk)
    waiting = queue.count()
    # ?after=<id> skips to the next item without deciding this one.
    after = request.GET.get("after", "")
    if request.method == "GET" and after.isdigit():
        queue = queue.filter(pk__gt=int(after))
    submission = queue.first()
    context = {"project": project, "membership": membership, "waiting": waiting, "submission": submission,
               "form": form, "skipped": request.method == "GET" and after.isdigit()}
    if submission is not None:
        context.update(_submission_context(project, submission))
    status = 400 if form["error"] else 200
    return render(request, "frontend/review.html", context, status=status)


def _submission_context(project, submission) -> dict:
    task = selectors.task_with_replies(task_id=submission.task_id)
    replies = list(task.replies.all())
    conversation = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                    for m in (task.conversation or []) if isinstance(m, dict)]
    context = {
        "task": task,
        "conversation": conversation,
        "is_comparison": submission.kind == TaskKind.COMPARISON,
        "instructions": submission.instruction_version,
        "current_instructions": project.current_instructions,
        "critiques": [_critique(c) for c in model_selectors.critiques_for(submission=submission)],
        "criteria": RATING_CRITERIA,
    }
    if submission.kind == TaskKind.COMPARISON:
        context.update(_ranking_context(submission, replies))
    else:
        by_id = {r.pk: r for r in replies}
        context["drafts_used"] = [
            {"reply": by_id.get(d.get("reply_id")), "edit_distance": d.get("edit_distance")}
            for d in (submission.draft_sources or []) if isinstance(d, dict)]
    return context


def _ranking_context(submission, replies) -> dict:
    """Letters as the annotator saw them; replies listed best first with their place, ratings and
    flags; the tie-groups written as "A = B > D > C"."""
    shown = ranking_order(replies, submission.lease_id)
    letters = {r.pk: string.ascii_uppercase[i % 26] for i, r in enumerate(shown)}
    ratings = submission.ratings if isinstance(submission.ratings, dict) else {}
    flags = submission.flags if isinstance(submission.flags, dict) else {}
    flag_names = dict((f, f.replace("_", " ")) for f in FLAG_CHOICES)
    by_id = {r.pk: r for r in shown}
    groups, placed = [], set()
    for place, group in enumerate(submission.ranking or [], start=1):
        members = [by_id[int(rid)] for rid in group if str(rid).isdigit() and int(rid) in by_id]
        if not members:
            continue
        groups.append({"place": place, "tie": len(members) > 1, "items": [
            {"letter": letters[r.pk], "reply": r,
             "ratings": [(c, (ratings.get(str(r.pk)) or {}).get(c)) for c in RATING_CRITERIA],
             "flags": [flag_names.get(f, str(f)) for f in (flags.get(str(r.pk)) or [])]}
            for r in sorted(members, key=lambda r: letters[r.pk])]})
        placed.update(r.pk for r in members)
    unranked = [{"letter": letters[r.pk], "reply": r} for r in shown if r.pk not in placed]
    summary = " > ".join(" = ".join(item["letter"] for item in g["items"]) for g in groups)
    return {"rank_groups": groups, "unranked": unranked, "ranking_summary": summary}


def _critique(critique) -> dict:
    scores = critique.scores if isinstance(critique.scores, dict) else {}
    issues = [i for i in (critique.issues or []) if isinstance(i, dict)]
    return {
        "status": critique.status,
        "verdict": critique.verdict,
        "model": critique.model_version.name,
        "instruction_version": critique.instruction_version.number,
        "scores": [(c, scores.get(c)) for c in RATING_CRITERIA],
        "issues": [{"quote": str(i.get("quote", "") or ""), "problem": str(i.get("problem", "") or ""),
                    "suggestion": str(i.get("suggestion", "") or "")} for i in issues],
        "error": critique.error,
    }


def returned_rows(*, project, annotator, limit: int = 10) -> list[dict]:
    """Rejected work of mine with the reviewer's reason, newest first, for the home page."""
    rows = []
    for review in selectors.returned_to_me(project=project, annotator=annotator)[:limit]:
        conversation = review.submission.task.conversation or []
        prompt = next((str(m.get("content", "")) for m in reversed(conversation)
                       if isinstance(m, dict) and m.get("role") == "user"), "")
        # Returned to redo (project.on_reject = "return"): the lease is open again and still theirs.
        lease = review.submission.lease
        redo = lease.pk if lease.status == Lease.Status.ACTIVE else None
        rows.append({"review": review, "prompt": prompt, "redo_lease": redo})
    return rows
