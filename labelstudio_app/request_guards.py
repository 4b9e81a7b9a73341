"""Checks every request passes before any view sees it."""
from __future__ import annotations

from django.http import HttpResponseBadRequest, JsonResponse


class RefuseNulInQuery:
    """A NUL character in a query parameter is refused with a 400. PostgreSQL text cannot hold
    NUL, so a value like ``?status=%00`` that reaches a filter would otherwise end as a database
    error (a 500) in whichever view forgot to check; form and JSON fields are already refused by
    Django's and DRF's own NUL validators."""

    MESSAGE = "Query parameters cannot contain NUL characters."

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            if request.path.startswith("/api/"):
                return JsonResponse({"error": "invalid", "detail": self.MESSAGE}, status=400)
            return HttpResponseBadRequest(self.MESSAGE)
        return self.get_response(request)
