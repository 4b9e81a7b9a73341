"""Project-scoped access for the pages, with the same rules as the API's ProjectRolePermission:
not a member -> 404 (indistinguishable from a project that does not exist), a member whose role
does not allow the page -> 403. Anonymous visitors are sent to the login form by ``login_required``
before any of this runs."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from annotations import selectors
from annotations.models import Membership


def membership_or_404(request, project_id: int, roles) -> Membership:
    membership = selectors.membership(project_id=project_id, user=request.user)
    if membership is None:
        raise Http404("No such project.")
    if membership.role not in roles:
        raise PermissionDenied("Your role in this project does not allow this page.")
    return membership
