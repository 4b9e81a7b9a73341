"""Datasets & finetunes in a real browser, with a real Celery worker: an ML engineer makes a
snapshot with the form, watches its export reach "ready" without reloading the page, and downloads
one of its files through the checked download link."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from annotations.models import AuditEntry, DatasetSnapshot, Role
from tests.annotations.exports.helpers import comparison, demonstration

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_engineer_makes_a_snapshot_sees_it_finish_live_and_downloads_it(page, live_server, logged_in, project,
                                                                         member, celery_worker_process):
    engineer = member(Role.ENGINEER)
    demonstration(project, [{"role": "user", "content": "How do I boil an egg?"}], ["Simmer it for nine minutes."])
    comparison(project, [{"role": "user", "content": "Pick one"}], ["Good", "Bad"], [[[0], [1]]])
    logged_in(engineer).goto(f"{live_server.url}/projects/{project.pk}/imports/")  # the nav is on every project page
    page.get_by_role("link", name="Datasets & finetunes").click()
    page.wait_for_selector("#datasets-app[data-ready]")

    page.fill("#id_snap-name", "first export")
    page.fill("#id_snap-eval_fraction", "0")
    page.uncheck("#id_snap-near_duplicates")
    page.fill("#id_snap-licence", "CC-BY-4.0")
    page.click("#make-snapshot")
    page.wait_for_selector("#datasets-app[data-ready]")
    snapshot = DatasetSnapshot.objects.get(project=project)
    expect(page.locator(".msg")).to_contain_text(f"Snapshot {snapshot.pk} queued")
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page

    row = page.locator(f"tr[data-snapshot-id='{snapshot.pk}']")
    expect(row.locator("[data-field=status]")).to_have_text("ready", timeout=180_000)
    assert page.evaluate("window.stillTheSamePage") is True
    expect(row.locator(".cancel-snapshot")).to_have_count(0)  # nothing left to cancel once it is ready
    snapshot.refresh_from_db()
    expect(row.locator("[data-field=hash]")).to_have_text(snapshot.content_sha256[:12])
    expect(row.locator("[data-field=rows]")).to_contain_text("sft.train 1")
    assert row.locator("progress").evaluate("p => p.value") == 1

    with page.expect_download() as info:
        row.get_by_role("link", name="sft.train.jsonl").click()
    download = info.value
    assert download.suggested_filename == f"snapshot-{snapshot.pk}-sft.train.jsonl"
    record = json.loads(open(download.path()).read().splitlines()[0])
    assert record["messages"][-1] == {"role": "assistant", "content": "Simmer it for nine minutes."}
    entry = AuditEntry.objects.get(action=AuditEntry.Action.EXPORT_DOWNLOADED, project=project)
    assert entry.actor == engineer and entry.details["file"] == "sft.train.jsonl"
