import os

import pytest
from rest_framework.test import APIClient

from annotations.models import Role

from .factories import MembershipFactory, ProjectFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def admin_user(project):
    return project.created_by


@pytest.fixture
def member(project):
    """Make a user with a role in ``project``: member("annotator")."""

    def make(role=Role.ANNOTATOR, project_=None):
        user = UserFactory()
        MembershipFactory(project=project_ or project, user=user, role=role)
        return user

    return make


@pytest.fixture
def annotator(member):
    return member(Role.ANNOTATOR)


@pytest.fixture
def api():
    """api(user) -> an APIClient authenticated as that user (or anonymous with None)."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process for the whole session, on the test database."""
    from django.conf import settings
    from django.db import connection

    from labelstudio_app.celery import app

    from .processes import CeleryWorker, database_url

    with django_db_blocker.unblock():
        db = database_url(connection.settings_dict)
    app.control.purge()  # nothing left over from an earlier, interrupted run
    worker = CeleryWorker(database=db, redis_url=settings.REDIS_URL,
                          log_path=tmp_path_factory.mktemp("celery") / "worker.log").start()
    yield worker
    worker.stop()
