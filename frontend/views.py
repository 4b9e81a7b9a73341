from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render

from annotations import selectors
from annotations.api.throttles import login_attempt_allowed
from annotations.errors import DomainError
from annotations.models import LABELLING_KINDS, Membership
from annotations.quality.models import Notification
from annotations.permissions import ADMINS, LABELLERS, STAFF
from annotations.services import leases

from .access import membership_or_404, project_page
from .review import REVIEWERS, returned_rows


@login_required
def home(request):
    memberships = {m.project_id: m for m in Membership.objects.filter(user=request.user)}
    rows = []
    for project in selectors.projects_for_user(request.user):
        role = memberships[project.pk].role
        rows.append({
            "project": project,
            "role": role,
            "stats": selectors.annotator_stats(project=project, annotator=request.user) if role in LABELLERS else None,
            "can_label": role in LABELLERS,
            "is_staff": role in STAFF,
            "is_admin": role in ADMINS,
            "can_review": role in REVIEWERS,
            "returned": returned_rows(project=project, annotator=request.user) if role in LABELLERS else [],
            # Stopped by a quality rule or an admin: "next" answers with the reason, so say it here first.
            "paused": memberships[project.pk].paused_at is not None,
            "unread_notes": (Notification.objects.filter(project=project, read_at__isnull=True).count()
                             if role in ADMINS else 0),
        })
    return render(request, "frontend/home.html", {"rows": rows})


@project_page(post=LABELLERS)
def start_labelling(request, project_id: int):
    """Resume my oldest open lease or, when I hold none, lease the next task. Resuming first means
    a reload, a second tab or a crash never strands work that is autosaved in the browser."""
    membership = membership_or_404(request, project_id, LABELLERS)
    project = membership.project
    # Labelling only: red-team tasks are started from the red-team page.
    lease = selectors.open_leases(project=project, annotator=request.user).filter(
        task__kind__in=LABELLING_KINDS).first()
    if lease is None:
        try:
            lease = leases.lease_next_task(project=project, annotator=request.user, kinds=LABELLING_KINDS)
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("home")
    return redirect("label", project_id=project.pk, lease_id=lease.pk)


class ThrottledLoginView(auth_views.LoginView):
    """Django's login, limited per client address and per account so passwords cannot be guessed
    at speed (annotations.api.throttles, shared with the token endpoint)."""

    def post(self, request, *args, **kwargs):
        if not login_attempt_allowed(request, request.POST.get("username", "")):
            return HttpResponse("Too many login attempts; wait a minute.", status=429)
        return super().post(request, *args, **kwargs)
