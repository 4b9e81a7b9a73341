"""Domain errors of deployment feedback and red-teaming (mapped to HTTP by annotations.api.errors)."""
from __future__ import annotations

from ..errors import DomainError


class ReportClosed(DomainError):
    """The report was dismissed or marked a duplicate: it makes no more tasks and takes no other decision."""

    code = "report_closed"
    status = 409


class ReportAlreadyTriaged(DomainError):
    code = "report_already_triaged"
    status = 409


class SessionNotActive(DomainError):
    code = "session_not_active"
    status = 409


class ModelTurnPending(DomainError):
    """The model has not answered the last message yet (or its answer failed and needs a retry)."""

    code = "model_turn_pending"
    status = 409


class ConversationLimit(DomainError):
    """The chat reached its bound on turns or length: end the session with an outcome."""

    code = "conversation_limit"
    status = 409


class TurnConflict(DomainError):
    """The client's idea of the next position differs from the server's (another tab, a retry)."""

    code = "turn_conflict"
    status = 409
