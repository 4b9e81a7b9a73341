"""How the report endpoint knows its caller: a report token, and nothing else.

``ReportTokenAuthentication`` is set on that one view only. Every other view keeps the project's
default authentication (user API tokens and sessions), which does not know report tokens, so a
report token opens nothing but reporting. The report view does not accept user tokens or
sessions either: a deployment gets a credential of its own that an admin can revoke without
touching anybody's account, and a leaked user token cannot be used to flood a triage queue.
"""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from .models import ReportToken
from .tokens import authenticate_report_token

KEYWORD = b"bearer"


class ReportTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer lwr_…``. The request's user stays anonymous; ``request.auth`` is
    the ReportToken, which names the project."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts:
            return None
        if parts[0].lower() != KEYWORD or len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the report token as 'Authorization: Bearer <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid report token.") from None
        token = authenticate_report_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked report token.")
        return AnonymousUser(), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="reports"'


class HasReportToken(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ReportToken)


class _LiveRateThrottle(SimpleRateThrottle):
    """Reads its rate from settings on each request (DRF binds the rates at import), so a
    deployment's environment and the tests can change it."""

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]


class ReportAddressThrottle(_LiveRateThrottle):
    """Per client address, checked before the token is looked up: guessing tokens costs the guesser."""

    scope = "reports-address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ReportTokenThrottle(_LiveRateThrottle):
    """Per token: one deployment cannot flood the queue, whatever addresses it sends from."""

    scope = "reports"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ReportToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class ReportTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the report token."""

    target_class = "annotations.feedback.auth.ReportTokenAuthentication"
    name = "reportToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A project's report ingestion token (lwr_…); it opens the report endpoint only."}
