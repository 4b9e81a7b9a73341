from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import render

from annotations import selectors
from annotations.models import Membership

LOGIN_ATTEMPTS_PER_MINUTE = 10


@login_required
def home(request):
    roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
    projects = [(p, roles.get(p.pk)) for p in selectors.projects_for_user(request.user)]
    return render(request, "frontend/home.html", {"projects": projects})


class ThrottledLoginView(auth_views.LoginView):
    """Django's login, limited per client address so passwords cannot be guessed at speed."""

    def post(self, request, *args, **kwargs):
        limit = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")[0])
        key = f"login-attempts:{request.META.get('REMOTE_ADDR', '')}"
        attempts = cache.get_or_set(key, 0, timeout=60)
        if attempts >= limit:
            return HttpResponse("Too many login attempts; wait a minute.", status=429)
        cache.incr(key)
        return super().post(request, *args, **kwargs)
