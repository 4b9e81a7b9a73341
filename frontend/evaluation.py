"""Arena pages: blind pairwise voting for labellers, and the leaderboard for staff.

A battle page shows the conversation and replies A and B, never the model names; the vote goes to
the REST API (``/api/projects/<id>/battles/<battle_id>/vote/``) from ``arena.js`` and its answer
reveals the models. Showing a battle goes through the same service as the API, so a voter is never
shown the same battle twice on either path."""
from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from annotations.errors import DomainError
from annotations.permissions import LABELLERS, STAFF
from models_service.evaluation import selectors, voting
from models_service.evaluation.models import BattleVote

from .access import membership_or_404, project_page
from .plots import rating_plot

BOOTSTRAP = 1000  # resamples for the page's intervals (the API takes ?bootstrap=)


def _run_filter(request) -> int | None:
    value = request.GET.get("run", "")
    return int(value) if value.isdigit() else None


@project_page(get=LABELLERS)
def arena(request, project_id: int):
    membership = membership_or_404(request, project_id, LABELLERS)
    project = membership.project
    run_id = _run_filter(request)
    open_vote = BattleVote.objects.filter(voter=request.user, voted_at__isnull=True,
                                          battle__in=voting.votable_battles(project=project, run_id=run_id)).first()
    return render(request, "frontend/arena.html", {
        "project": project, "membership": membership, "run_id": run_id, "open_vote": open_vote,
        "progress": voting.voter_progress(project=project, voter=request.user, run_id=run_id),
    })


@project_page(post=LABELLERS)
def arena_next(request, project_id: int):
    membership = membership_or_404(request, project_id, LABELLERS)
    run_id = _run_filter(request)
    try:
        shown = voting.next_battle(project=membership.project, voter=request.user, run_id=run_id)
    except DomainError as exc:
        messages.info(request, exc.message)
        return redirect("arena", project_id=project_id)
    return redirect("arena-battle", project_id=project_id, battle_id=shown.battle_id)


@project_page(get=LABELLERS)
def arena_battle(request, project_id: int, battle_id: int):
    membership = membership_or_404(request, project_id, LABELLERS)
    project = membership.project
    vote = (BattleVote.objects.select_related("battle__prompt", "battle__left", "battle__right")
            .filter(battle_id=battle_id, voter=request.user, battle__in=voting.votable_battles(project=project))
            .first())
    if vote is None:  # never shown to this voter (or not in this project): the same answer
        raise Http404("No such battle.")
    if vote.voted_at is not None:
        messages.info(request, "You already voted on that battle.")
        return redirect("arena", project_id=project_id)
    battle = vote.battle
    return render(request, "frontend/arena_battle.html", {
        "project": project, "membership": membership, "battle": battle,
        "conversation": [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                         for m in (battle.prompt.conversation or []) if isinstance(m, dict)],
        "reply_a": battle.left.content, "reply_b": battle.right.content,
        "vote_url": f"/api/projects/{project.pk}/battles/{battle.pk}/vote/",
        "run_id": _run_filter(request),
        "progress": voting.voter_progress(project=project, voter=request.user),
    })


@project_page(get=STAFF)
def leaderboard(request, project_id: int):
    membership = membership_or_404(request, project_id, STAFF)
    project = membership.project
    run_id = _run_filter(request)
    params = {"run_ids": [run_id] if run_id else None, "bootstrap": BOOTSTRAP, "seed": 0}
    board = selectors.leaderboard(project=project, **params)
    runs = list(selectors.runs_for(project=project)[:50])
    # one table, the people's board and the judge's side by side, best (by people, then judge) first
    by_model = {key: {r["model"]: r for r in board[key]["models"]} for key in ("human", "judge")}
    rows = [{"model": m["name"], "boards": [by_model["human"][m["name"]], by_model["judge"][m["name"]]]}
            for m in board["models"]]
    rows.sort(key=lambda r: (r["boards"][0]["rank"] or 1e9, r["boards"][1]["rank"] or 1e9, r["model"]))
    matrices = []
    for key, label in (("human", "People"), ("judge", "Judge")):
        b = board[key]
        matrices.append({"label": label, "models": b["matrix_models"],
                         "rows": [{"model": name, "cells": [{"rate": rate, "count": count} for rate, count in
                                                            zip(b["win_rate"][i], b["battle_counts"][i], strict=True)]}
                                  for i, name in enumerate(b["matrix_models"])]})
    return render(request, "frontend/leaderboard.html", {
        "project": project, "membership": membership, "board": board, "plot": rating_plot(board),
        "runs": runs, "selected_runs": params["run_ids"] or [], "matrices": matrices, "rows": rows,
        "json_url": f"/api/projects/{project.pk}/leaderboard/" + (f"?run={params['run_ids'][0]}"
                                                                   if params["run_ids"] else ""),
    })
