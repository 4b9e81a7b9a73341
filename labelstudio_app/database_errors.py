"""A lost database answers 503 everywhere, never a bare 500.

The API already maps ``OperationalError`` / ``InterfaceError`` to ``503 database_unavailable``
in its exception handler (``annotations.api.errors``). Pages did not: a dropped PostgreSQL
connection gave the generic "Server Error (500)". Here the same errors become, for a page, a
short HTML page that says what happened, that nothing the person typed is lost (the labelling
page keeps its text in the browser; a form's posted text is shown back on this page, to copy or
send again) and when to retry (``Retry-After``); for anything under ``/api/`` the API's JSON.

Two hooks, because a database error can surface in a view (``process_exception``) or outside one,
in a middleware's response phase or a template rendered late (``handler500``, which Django calls
inside the ``except`` block, so the exception is still at hand). The page is rendered without the
request's context: it must not touch the session, the user or anything else that needs the
database.
"""
from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
DB_ERRORS = (OperationalError, InterfaceError)
# Fields never shown back: credentials and form plumbing.
SECRET_FIELDS = ("csrf", "password", "token", "secret")
MAX_FIELDS, MAX_FIELD_CHARS = 20, 20_000


def is_database_error(exc: BaseException | None) -> bool:
    """The error, or one it was raised from (a template error wrapping a query), is the database's."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DB_ERRORS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def posted_text(request) -> list[tuple[str, str]]:
    """(field, text) of a form POST's non-empty text fields, bounded, without secrets."""
    if request.method != "POST" or request.content_type not in ("application/x-www-form-urlencoded",
                                                                "multipart/form-data"):
        return []
    try:
        items = list(request.POST.lists())
    except Exception:  # noqa: BLE001 - a body we cannot read again is simply not shown
        return []
    out = []
    for name, values in items:
        if any(word in name.lower() for word in SECRET_FIELDS):
            continue
        for value in values:
            if isinstance(value, str) and value.strip() and len(out) < MAX_FIELDS:
                out.append((name, value[:MAX_FIELD_CHARS]))
    return out


def database_unavailable(request) -> HttpResponse:
    log.warning("database unavailable during %s %s", request.method, request.path)
    if request.path.startswith("/api/"):
        from annotations.api.errors import database_unavailable as api_answer

        body = api_answer().data
        return JsonResponse(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    html = render_to_string("frontend/database_unavailable.html", {
        "kept": posted_text(request), "retry_after": RETRY_AFTER_S, "method": request.method})
    return HttpResponse(html, status=503, headers={"Retry-After": str(RETRY_AFTER_S),
                                                   "Cache-Control": "no-store"})


class DatabaseUnavailableMiddleware:
    """A view that lost the database answers 503 (see the module's docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_error(exception):
            return database_unavailable(request)
        return None


def server_error(request):
    """``handler500``: the database errors that escaped the views get the 503 too."""
    if is_database_error(sys.exc_info()[1]):
        return database_unavailable(request)
    return defaults.server_error(request)
