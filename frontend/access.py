"""Project-scoped access for the pages, with the same rules as the API's ProjectRolePermission:
not a member -> 404 (indistinguishable from a project that does not exist), a member whose role
does not allow the page -> 403. Anonymous visitors are sent to the login form first.

Every page under /projects/<id>/ is declared with ``project_page`` and the roles per HTTP method,
like ``ProjectScopedView.roles`` in the API: a method not listed is refused (405) before anything
is looked up. The declaration is also what tests/annotations/test_permissions.py reads to
walk every page as an outsider, as another project's admin and as each role."""
from __future__ import annotations

import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed

from annotations import selectors
from annotations.models import Membership


def project_page(**roles_by_method):
    """``@project_page(get=STAFF, post=ADMINS)``: the page answers those methods to those roles.
    HEAD follows GET. The view still receives ``project_id`` and calls ``membership_or_404`` for
    the membership, which returns the one checked here without a second query."""
    roles = {method.lower(): frozenset(allowed) for method, allowed in roles_by_method.items()}
    if "get" in roles:
        roles.setdefault("head", roles["get"])
    allowed_methods = sorted(m.upper() for m in roles)

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, project_id, *args, **kwargs):
            method = request.method.lower()
            if method not in roles:
                return HttpResponseNotAllowed(allowed_methods)
            request.project_membership = _membership(request, project_id, roles[method])
            return view(request, project_id, *args, **kwargs)

        checked = login_required(wrapper)
        checked.project_roles = roles
        return checked

    return decorate


def membership_or_404(request, project_id: int, roles) -> Membership:
    checked = getattr(request, "project_membership", None)
    if checked is not None and checked.project_id == int(project_id) and checked.role in roles:
        return checked
    return _membership(request, project_id, roles)


def _membership(request, project_id: int, roles) -> Membership:
    membership = selectors.membership(project_id=project_id, user=request.user)
    if membership is None:
        raise Http404("No such project.")
    if membership.role not in roles:
        raise PermissionDenied("Your role in this project does not allow this page.")
    return membership
