"""People's votes on battles.

"Next battle" first resumes a battle already shown to the voter and not voted on (a reload or a
second tab is the same showing); otherwise it shows a battle the voter has never been shown, the
least-voted first. Showing creates the voter's ``BattleVote`` row, which is unique per (battle,
voter): nobody is shown the same battle twice, and a vote is accepted only for a battle that was
shown to that voter. Model names are never part of what is shown; the vote's answer reveals them.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotations.errors import InvalidInput, NotFound
from annotations.models import Project

from .errors import AlreadyVoted, NoBattleAvailable
from .models import Battle, BattleVote, Choice, EvalRun

VOTABLE_RUNS = (EvalRun.Status.JUDGING, EvalRun.Status.DONE)


def votable_battles(*, project: Project, run_id: int | None = None):
    battles = Battle.objects.filter(run__project=project, run__status__in=VOTABLE_RUNS)
    return battles.filter(run_id=run_id) if run_id else battles


def _shown(vote_id: int) -> BattleVote:
    return BattleVote.objects.select_related("battle__prompt", "battle__left", "battle__right").get(pk=vote_id)


def next_battle(*, project: Project, voter, run_id: int | None = None, now=None) -> BattleVote:
    battles = votable_battles(project=project, run_id=run_id)
    open_vote = BattleVote.objects.filter(voter=voter, voted_at__isnull=True, battle__in=battles).order_by("id").first()
    if open_vote is not None:
        return _shown(open_vote.pk)
    for _attempt in range(3):
        candidate = (battles.exclude(votes__voter=voter)
                     .annotate(n=Count("votes", filter=Q(votes__voted_at__isnull=False)))
                     .order_by("n", "?").values_list("pk", flat=True).first())
        if candidate is None:
            break
        try:
            with transaction.atomic():
                vote = BattleVote.objects.create(battle_id=candidate, voter=voter, shown_at=now or timezone.now())
            return _shown(vote.pk)
        except IntegrityError:  # the same voter's parallel request took it: pick again
            continue
    raise NoBattleAvailable("No battle left for you to vote on.")


def cast_vote(*, project: Project, voter, battle_id: int, choice: str, time_spent_ms: int = 0,
              now=None) -> tuple[BattleVote, bool]:
    """Record the vote; returns (vote, replayed). Sending the same vote again is answered with the
    stored one (a retry after a lost response); a different vote on a voted battle is refused."""
    if choice not in Choice.values:
        raise InvalidInput(f"choice must be one of {Choice.values}.", field="choice")
    with transaction.atomic():
        vote = (BattleVote.objects.select_for_update(of=("self",))
                .select_related("battle__run", "battle__left__model_version", "battle__right__model_version")
                .filter(battle_id=battle_id, battle__run__project=project, voter=voter).first())
        if vote is None:
            raise NotFound("No such battle was shown to you.")
        if vote.voted_at is not None:
            if vote.choice == choice:
                return vote, True
            raise AlreadyVoted(f"You already voted {vote.choice!r} on this battle.")
        if vote.battle.run.status not in VOTABLE_RUNS:
            raise InvalidInput(f"The eval run is {vote.battle.run.status}; it takes no more votes.", field="battle")
        vote.choice = choice
        vote.voted_at = now or timezone.now()
        vote.time_spent_ms = max(0, min(int(time_spent_ms or 0), 24 * 3600 * 1000))
        vote.save(update_fields=["choice", "voted_at", "time_spent_ms"])
    return vote, False


def voter_progress(*, project: Project, voter, run_id: int | None = None) -> dict:
    battles = votable_battles(project=project, run_id=run_id)
    voted = BattleVote.objects.filter(voter=voter, battle__in=battles, voted_at__isnull=False).count()
    return {"voted": voted, "left": battles.exclude(votes__voter=voter).count()}
