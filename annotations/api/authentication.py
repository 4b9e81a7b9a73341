"""Token authentication whose lookup runs as one prepared statement.

Same contract as DRF's ``TokenAuthentication`` (same header, same errors, ``request.auth`` is the
Token): only the query differs. Every API request pays for this lookup, and compiling the ORM query
cost more CPU than running it (docs/benchmarks.md, "Where the time goes").
"""
from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from ..services import prepared


@functools.cache
def _token_sql() -> str:
    user = get_user_model()
    return (f"SELECT {prepared.select_list(Token, 't')}, {prepared.select_list(user, 'u')} "
            f"FROM {Token._meta.db_table} t JOIN {user._meta.db_table} u ON u.id = t.user_id "
            "WHERE t.key = %(key)s")


class PreparedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        if connection.vendor != "postgresql":
            return super().authenticate_credentials(key)
        row = prepared.fetchone(_token_sql(), {"key": key})
        if row is None:
            raise AuthenticationFailed(_("Invalid token."))
        token, token.user = prepared.instances(row, Token, get_user_model())
        user = token.user
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return user, token
