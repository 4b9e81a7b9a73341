"""Domain errors, in the words of the domain. ``annotations.api.errors`` maps them to HTTP once."""
from __future__ import annotations


class DomainError(Exception):
    code = "domain_error"
    status = 400

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "not_found"
    status = 404


class PermissionDenied(DomainError):
    code = "permission_denied"
    status = 403


class InvalidInput(DomainError):
    code = "invalid"
    status = 400


class NoInstructions(DomainError):
    code = "no_instructions"
    status = 409


class LeaseCapReached(DomainError):
    code = "lease_cap_reached"
    status = 409


class NoTaskAvailable(DomainError):
    code = "no_task_available"
    status = 404


class AnnotatorPaused(DomainError):
    """A quality rule or an admin stopped serving this annotator new tasks in the project."""

    code = "annotator_paused"
    status = 403


class LeaseNotActive(DomainError):
    code = "lease_not_active"
    status = 409


class LeaseExpired(DomainError):
    code = "lease_expired"
    status = 409


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    status = 409


class ImportRejected(DomainError):
    """The whole file was refused before any row was read (size, encoding, format)."""

    code = "import_rejected"
    status = 400


class ImportRowError(Exception):
    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason
