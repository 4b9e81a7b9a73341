"""Import from a URL, end to end: the API refuses literal inside addresses at once (400, nothing
stored); names are resolved and checked by the worker, which fails the batch with the reason and
never connects; an allowed host's file is imported all or nothing like an upload, and audited."""
from __future__ import annotations

import time

import pytest

from annotations.models import AuditEntry, ImportBatch, Task
from annotations.services.imports import run_import_batch

from .file_servers import BODY, INSIDE, STAND_IN, Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def inside():
    server = Server(INSIDE)
    yield server
    server.close()


@pytest.fixture
def stand_in():
    server = Server(STAND_IN)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def post(api, user, project, url, **extra):
    return api(user).post(f"/api/projects/{project.pk}/imports/from-url/", {"url": url, **extra}, format="json")


@pytest.mark.parametrize("url", ["http://127.0.0.1/p.jsonl", "http://[::1]/p.jsonl", "http://169.254.169.254/p.jsonl",
                                 "http://2130706433/p.jsonl", "file:///etc/passwd", "http://example.org:6379/p.jsonl",
                                 "http://u:p@example.org/p.jsonl"])
def test_the_api_refuses_unsafe_urls_at_once_and_stores_nothing(api, project, admin_user, url):
    response = post(api, admin_user, project, url)
    assert response.status_code == 400 and response.json()["error"] == "unsafe_url", response.content
    assert not ImportBatch.objects.exists() and not AuditEntry.objects.filter(action="import.started").exists()


def test_the_format_comes_from_the_url_or_is_asked_for(api, project, admin_user):
    response = post(api, admin_user, project, "https://files.example.org/export")
    assert response.status_code == 400 and "format" in response.json()["detail"]
    response = post(api, admin_user, project, "https://files.example.org/export", format="csv")
    assert response.status_code == 202 and response.json()["format"] == "csv"


def test_a_name_that_resolves_inside_fails_the_batch_in_the_worker_without_a_connection(api, project, admin_user,
                                                                                          inside, settings):
    settings.IMPORT_URL_PORTS = [80, 443, inside.port]
    response = post(api, admin_user, project, inside.url("/prompts.jsonl", host="localhost"))
    assert response.status_code == 202  # a name: only the worker's lookup can tell
    batch = run_import_batch(batch_id=response.json()["id"])
    assert batch.status == "failed" and not batch.file
    assert "resolves to" in batch.errors[0]["reason"] and "loopback" in batch.errors[0]["reason"]
    assert inside.seen == [] and not Task.objects.filter(project=project).exists()


def test_an_allowed_hosts_file_is_fetched_and_imported_and_audited(api, project, admin_user, stand_in, settings):
    settings.IMPORT_URL_PORTS = [80, 443, stand_in.port]
    settings.IMPORT_URL_ALLOW_NETWORKS = [f"{STAND_IN}/32"]
    url = stand_in.url("/exports/prompts.jsonl")
    response = post(api, admin_user, project, url)
    assert response.status_code == 202
    body = response.json()
    assert body["file_name"] == "prompts.jsonl" and body["source_url"] == url
    batch = run_import_batch(batch_id=body["id"])
    assert batch.status == "done" and batch.tasks_created == 2 and batch.file.startswith("imports/")
    assert sorted(t.prompt for t in Task.objects.filter(project=project)) == ["Fetched prompt one",
                                                                              "Fetched prompt two"]
    entry = AuditEntry.objects.get(action="import.started", project=project)
    assert entry.actor == admin_user and entry.details["url"] == url
    assert run_import_batch(batch_id=body["id"]).tasks_created == 2 and len(stand_in.seen) == 1  # ran once


def test_a_file_over_the_limit_fails_the_batch_and_keeps_nothing(api, project, admin_user, stand_in, settings,
                                                                tmp_path):
    settings.IMPORT_URL_PORTS = [80, 443, stand_in.port]
    settings.IMPORT_URL_ALLOW_NETWORKS = [f"{STAND_IN}/32"]
    settings.IMPORT_MAX_BYTES = len(BODY) - 1
    batch = run_import_batch(batch_id=post(api, admin_user, project, stand_in.url()).json()["id"])
    assert batch.status == "failed" and "limit" in batch.errors[0]["reason"] and not batch.file
    assert not list(tmp_path.rglob("*.jsonl"))


def test_the_imports_page_offers_the_url_form_and_shows_refusals(client, project, admin_user):
    client.force_login(admin_user)
    page = f"/projects/{project.pk}/imports/"
    assert b"Import from a URL" in client.get(page).content
    response = client.post(page, {"action": "url", "url-url": "http://10.0.0.1/p.jsonl", "url-kind": "demonstration"})
    assert response.status_code == 200 and b"private address" in response.content
    assert not ImportBatch.objects.exists()
    response = client.post(page, {"action": "url", "url-url": "https://files.example.org/p.csv",
                                  "url-kind": "demonstration"})
    batch = ImportBatch.objects.get()
    assert response.status_code == 302 and response.url == f"{page}{batch.pk}/" and batch.format == "csv"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_celery_worker_refuses_a_name_that_resolves_to_loopback(celery_worker_process, api, project, admin_user):
    """The real worker process with its default settings (no allow-list): localhost is refused
    after the lookup, before any connection (a connection attempt would say 'Could not fetch')."""
    response = post(api, admin_user, project, "http://localhost/prompts.jsonl")
    assert response.status_code == 202
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch = ImportBatch.objects.get(pk=response.json()["id"])
        if batch.status in ("done", "failed"):
            break
        time.sleep(0.2)
    assert batch.status == "failed", batch.status
    assert "resolves to" in batch.errors[0]["reason"] and "loopback" in batch.errors[0]["reason"]
