"""One place that turns domain errors into HTTP answers."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import DomainError


RETRY_AFTER_S = 2


def database_unavailable() -> Response:
    """The database could not be reached. What the request asked for may or may not have been
    stored (a commit can succeed and its answer be lost), so the client retries the same request:
    submits carry an idempotency key and a replay gets the stored submission back."""
    return Response({"error": "database_unavailable",
                     "detail": "The database is unreachable right now. Retry the same request (the same "
                               "idempotency key for a submission); nothing is stored twice."},
                    status=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def exception_handler(exc, context):
    if isinstance(exc, (OperationalError, InterfaceError)):
        return database_unavailable()
    if isinstance(exc, DomainError):
        body = {"error": exc.code, "detail": exc.message}
        if exc.details:
            body.update(exc.details)
        return Response(body, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response({"error": "invalid", **detail}, status=400)
    return drf_exception_handler(exc, context)
