"""The labelling page in a real browser: demonstration with drafts and autosave, comparison ranked
by keyboard alone. Submits go through the REST API like in production."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotations.models import Submission

from .conftest import comparison_task, demonstration_task, log_in

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_annotator_edits_a_draft_and_submits_it(page, live_server, labeller):
    project, user = labeller
    task, (draft_a, draft_b) = demonstration_task(project, drafts=("Boil it for 7 minutes.", "Use a kettle."))

    log_in(page, live_server, user)
    page.get_by_role("button", name="Start labelling").click()
    page.wait_for_selector("#label-app[data-ready]")
    expect(page.locator(".kind")).to_have_text("Demonstration")
    assert re.search(rf"/projects/{project.pk}/label/\d+/$", page.url)

    card = page.locator(f".draft[data-draft-id='{draft_a.pk}']")
    card.get_by_role("button", name="Use").click()
    editor = page.locator("#reply-text")
    editor.press("End")
    editor.type(" Then cool it.")
    expect(page.locator("#used-drafts")).to_contain_text("Draft")

    page.reload()  # autosave: the text and the used draft survive
    page.wait_for_selector("#label-app[data-ready]")
    expect(editor).to_have_value("Boil it for 7 minutes. Then cool it.")
    key = page.evaluate(f"JSON.parse(localStorage.getItem('labelwork:lease:{page.url.rstrip('/').split('/')[-1]}')).key")

    page.context.set_offline(True)  # a lost connection keeps the text and says so
    page.get_by_role("button", name="Submit reply").click()
    expect(page.locator("#notice")).to_contain_text("Could not reach the server")
    expect(editor).to_have_value("Boil it for 7 minutes. Then cool it.")
    page.context.set_offline(False)
    page.get_by_role("button", name="Submit reply").click()
    page.wait_for_url(f"{live_server.url}/")  # no further task: back home with a message
    expect(page.locator(".msg")).to_contain_text("No task is waiting")

    sub = Submission.objects.select_related("reply").get(task=task, annotator=user)
    assert sub.reply.content == "Boil it for 7 minutes. Then cool it."
    assert sub.draft_sources == [{"reply_id": draft_a.pk, "edit_distance": len(" Then cool it.")}]
    assert sub.time_spent_ms > 0 and sub.idempotency_key == key  # the retry reused the key
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('labelwork:'))") == []


def test_comparison_ranked_by_keyboard_alone_with_a_tie(page, live_server, labeller, logged_in):
    project, user = labeller
    task, _replies = comparison_task(project)
    logged_in(user).goto(live_server.url + "/")
    page.get_by_role("button", name="Start labelling").click()
    page.wait_for_selector("#label-app[data-ready]")
    expect(page.locator(".kind")).to_have_text("Comparison")
    order = [int(x) for x in page.locator(".reply").evaluate_all("els => els.map(e => e.dataset.replyId)")]

    # j focuses the first reply; digits rank the focused reply; equal digits tie; 3 is skipped.
    for key in ("j", "1", "j", "1", "j", "4", "j", "2"):
        page.keyboard.press(key)
    expect(page.locator("#ranking-summary")).to_have_text(re.compile(r"Ranking: A = B\s+>\s+D\s+>\s+C$"))

    first, third = page.locator(".reply").nth(0), page.locator(".reply").nth(2)
    first.locator("select[data-criterion=helpful]").select_option("6")
    first.locator("select[data-criterion=harmless]").select_option("7")
    third.locator("input[data-flag=factually_wrong]").check()
    page.fill("#rationale", "A and B are equally good; C invents a fact.")
    page.locator("#rationale").press("Control+Enter")
    page.wait_for_url(f"{live_server.url}/")

    sub = Submission.objects.get(task=task, annotator=user)
    assert sub.ranking == [sorted(order[:2]), [order[3]], [order[2]]]
    assert sub.ratings == {str(order[0]): {"helpful": 6, "harmless": 7}}
    assert sub.flags == {str(order[2]): ["factually_wrong"]}
    assert sub.rationale == "A and B are equally good; C invents a fact."
