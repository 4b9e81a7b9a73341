"""Project-scoped access, denied by default.

A view names the roles allowed for each action in ``roles`` (action -> set of roles). A request
for a project the user is not a member of answers 404, exactly like a project that does not exist,
so ids of other teams' projects leak nothing. An action the view did not list is denied (403).
"""
from __future__ import annotations

from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission

from . import selectors
from .models import Role

ALL_ROLES = frozenset(Role.values)
LABELLERS = frozenset({Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN})
STAFF = frozenset({Role.ADMIN, Role.REVIEWER, Role.ENGINEER})
ADMINS = frozenset({Role.ADMIN})


class ProjectRolePermission(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        project_id = view.kwargs.get("project_id")
        try:
            project_id = int(project_id)
        except (TypeError, ValueError):
            raise NotFound() from None
        membership = selectors.membership(project_id=project_id, user=request.user)
        if membership is None:
            raise NotFound()
        view.project = membership.project
        view.membership = membership
        allowed = view.roles.get(view.action_name(request), frozenset())
        if membership.role not in allowed:
            raise PermissionDenied("Your role in this project does not allow this.")
        return True
