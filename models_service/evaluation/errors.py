"""Evaluation's domain errors; ``annotations.api.errors`` maps every ``DomainError`` to HTTP."""
from __future__ import annotations

from annotations.errors import DomainError


class NoBattleAvailable(DomainError):
    code = "no_battle_available"
    status = 404


class AlreadyVoted(DomainError):
    code = "already_voted"
    status = 409


class LeakageRisk(DomainError):
    """A model in a run was trained on prompts of the eval set (or could have been)."""

    code = "leakage_risk"
    status = 400
