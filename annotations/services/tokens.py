"""API tokens: issued on a correct password, revoked by their owner. Both are audited."""
from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token

from . import audit


@transaction.atomic
def issue_token(*, user, client_ip: str = "") -> Token:
    """The user's token, created on first use. Asking again returns the same token and logs nothing."""
    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit.record(action=audit.Action.TOKEN_CREATED, actor=user, target=audit.user_target(user),
                     details={"ip": client_ip})
    return token


@transaction.atomic
def revoke_token(*, user, client_ip: str = "") -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit.record(action=audit.Action.TOKEN_REVOKED, actor=user, target=audit.user_target(user),
                     details={"ip": client_ip})
    return bool(deleted)
