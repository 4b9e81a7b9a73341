"""Review in a real browser: a reviewer rejects a demonstration with a reason from the keyboard, the
annotator then reads that reason on their home page; the model jobs page follows a job's progress
without reloading and cancels it."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotations.models import Review, Role, Submission
from annotations.services import leases, submissions
from models_service.models import ModelJob

from ..factories import MembershipFactory, UserFactory
from .conftest import demonstration_task, log_in, model_version

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_reviewer_rejects_with_a_reason_and_the_annotator_reads_it(page, live_server, labeller):
    project, annotator = labeller
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer, role=Role.REVIEWER)
    task, _ = demonstration_task(project, prompt="How long do I boil an egg?")
    lease = leases.lease_next_task(project=project, annotator=annotator)
    sub = submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k",
                                           text="Boil it for 2 minutes.", rationale="From memory.")

    log_in(page, live_server, reviewer)
    page.get_by_role("link", name="Review queue").click()
    page.wait_for_selector("#review-form[data-ready]")
    expect(page.locator("#reply-text")).to_have_text("Boil it for 2 minutes.")
    expect(page.locator(".conversation")).to_contain_text("How long do I boil an egg?")
    expect(page.locator(".critique")).to_contain_text("No model critique")

    page.get_by_role("button", name="Reject").click()  # no reason: the browser refuses, nothing is sent
    expect(page.locator("#reason")).to_be_focused()
    assert Submission.objects.get(pk=sub.pk).status == "submitted"

    page.locator("#reason").blur()
    page.keyboard.press("r")  # r focuses the reason
    expect(page.locator("#reason")).to_be_focused()
    page.keyboard.type("Two minutes gives a runny egg; the question implies hard-boiled: 9-10 minutes.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#queue-empty")
    expect(page.locator(".msg")).to_contain_text(f"Rejected and returned to the annotator: submission {sub.pk}")

    review = Review.objects.get(submission=sub)
    assert review.decision == "reject" and review.reviewer == reviewer
    assert review.reason == "Two minutes gives a runny egg; the question implies hard-boiled: 9-10 minutes."
    assert Submission.objects.get(pk=sub.pk).status == "rejected"

    page.context.clear_cookies()
    log_in(page, live_server, annotator)
    returned = page.locator(f".returned tr[data-submission='{sub.pk}']")
    expect(returned).to_contain_text("the question implies hard-boiled: 9-10 minutes.")
    expect(returned).to_contain_text(reviewer.username)
    expect(returned).to_contain_text("How long do I boil an egg?")


def test_accept_by_keyboard_shows_the_next_item(page, live_server, labeller, logged_in):
    project, annotator = labeller
    subs = []
    for i in range(2):
        demonstration_task(project, prompt=f"Question {i}?")
        lease = leases.lease_next_task(project=project, annotator=annotator)
        subs.append(submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator,
                                                     idempotency_key=f"k{i}", text=f"Answer {i}."))
    logged_in(project.created_by).goto(f"{live_server.url}/projects/{project.pk}/review/")
    page.wait_for_selector("#review-form[data-ready]")
    page.keyboard.press("?")
    expect(page.locator("#help-overlay")).to_be_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    page.wait_for_selector(f"#review-form[data-submission='{subs[1].pk}'][data-ready]")
    assert Submission.objects.get(pk=subs[0].pk).status == "accepted"
    page.keyboard.press("f")  # fix: the editor opens prefilled and focused
    editor = page.locator("#fix-text")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Answer 1.")
    editor.fill("Answer 1, corrected.")
    editor.press("Control+Enter")
    page.wait_for_selector("#queue-empty")
    review = Review.objects.select_related("fixed_reply").get(submission=subs[1])
    assert review.decision == "fix" and review.fixed_reply.content == "Answer 1, corrected."


def test_jobs_page_follows_progress_without_reloading_and_cancels(page, live_server, labeller, logged_in):
    project, _ = labeller
    engineer = UserFactory()
    MembershipFactory(project=project, user=engineer, role=Role.ENGINEER)
    job = ModelJob.objects.create(project=project, kind="judging", model_version=model_version(), status="running",
                                  total=10, done=2)
    logged_in(engineer).goto(f"{live_server.url}/projects/{project.pk}/jobs/")
    page.wait_for_selector("#jobs-app[data-ready]")
    row = page.locator(f"tr[data-job-id='{job.pk}']")
    expect(row.locator("[data-field=counts]")).to_have_text("2 / 10")
    page.evaluate("window.__sameDocument = true")
    ModelJob.objects.filter(pk=job.pk).update(done=6, failed=1)
    expect(row.locator("[data-field=counts]")).to_have_text("7 / 10", timeout=6000)
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    assert row.locator("progress").evaluate("p => p.value") == 7

    # A job started elsewhere appears on its own.
    other = ModelJob.objects.create(project=project, kind="drafting", model_version=model_version(), total=4)
    expect(page.locator(f"tr[data-job-id='{other.pk}'] [data-field=status]")).to_have_text("pending", timeout=6000)

    row.get_by_role("button", name="Cancel").click()
    expect(row.locator("[data-field=status]")).to_have_text("cancelled")
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
    assert ModelJob.objects.get(pk=job.pk).status == "cancelled"
