"""Limits on password guessing, shared by the token endpoint and the login form.

Two buckets per attempt: the client (its address; ``X-Forwarded-For`` counts only as far as
``REST_FRAMEWORK["NUM_PROXIES"]`` trusted proxies vouch for it, so a client cannot pick a fresh
identity per request) and the account being tried (so many addresses guessing one password still
hit a limit). The cost of the second: someone can keep an account's logins refused for a minute at
a time; its owner's API token keeps working. Rates are read at request time from
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (scopes ``login`` and ``token``)."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle


def client_ident(request) -> str:
    """The client's address as DRF's throttles see it (honours NUM_PROXIES). Works on a plain
    Django request too: it only reads ``request.META``."""
    return BaseThrottle().get_ident(request)


def account_key(username) -> str:
    return hashlib.sha256(str(username or "").strip().lower().encode()).hexdigest()[:32]


class _LiveRate(SimpleRateThrottle):
    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]


class TokenPerClientThrottle(_LiveRate):
    scope = "token"

    def get_cache_key(self, request, view):
        return f"throttle:token:client:{client_ident(request)}"


class TokenPerAccountThrottle(_LiveRate):
    scope = "token"

    def get_cache_key(self, request, view):
        if request.method != "POST":
            return None  # revoking one's own token is not a guess
        username = request.data.get("username") if hasattr(request.data, "get") else None
        return f"throttle:token:account:{account_key(username)}" if username else None


def login_attempt_allowed(request, username: str) -> bool:
    """Count one login form attempt; False once the client or the account is over the limit."""
    number, period = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
    keys = [f"throttle:login:client:{client_ident(request)}", f"throttle:login:account:{account_key(username)}"]
    if any(cache.get_or_set(key, 0, timeout=seconds) >= int(number) for key in keys):
        return False
    for key in keys:
        try:
            cache.incr(key)
        except ValueError:  # expired between the two calls: start a new window
            cache.set(key, 1, timeout=seconds)
    return True
