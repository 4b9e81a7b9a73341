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


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """The real vLLM CPU server with the bundled model, once per session. The test command builds
    its venv and converts the model beforehand (both cached outside the checkout)."""
    from urllib.parse import urlparse

    from django.conf import settings

    from models_service.model_files import prepare_model
    from models_service.vllm_server import VllmServer, default_python

    if os.environ.get("TEST_MODEL_BASE_URL"):
        # A capable model elsewhere (e.g. a GPU box): use it instead of starting the bundled one.
        yield None
        return
    python = default_python()
    assert python.exists(), f"vLLM venv missing ({python}): run `bash scripts/vllm_venv.sh` (make test does)"
    server = VllmServer(prepare_model(), port=urlparse(settings.MODEL_BASE_URL).port, python=python,
                        served_model_name=settings.MODEL_NAME, enforce_eager=True,
                        max_model_len=settings.MODEL_MAX_CONTEXT,
                        log_path=tmp_path_factory.mktemp("vllm") / "server.log")
    server.start()
    try:
        server.wait_ready(timeout=600)
        yield server
    finally:
        server.stop()
