"""The review queue, the "Returned to you" list on the home page and the model jobs page, without a
browser (who may see them is in test_pages.PAGES)."""
from __future__ import annotations


import pytest

from annotations.models import CandidateReply, Review, Role, Submission, Task
from annotations.services import leases, reviews, submissions
from frontend.labelling import ranking_order
from models_service.models import Critique, ModelJob

from ..factories import MembershipFactory, ProjectFactory, UserFactory
from .conftest import comparison_task, demonstration_task, model_version

pytestmark = pytest.mark.django_db


def demo_submission(project, annotator, text="Boil it <b>7</b> minutes.", rationale="kept it short", key="k"):
    demonstration_task(project, prompt=f"How do I boil an egg? ({key})")
    lease = leases.lease_next_task(project=project, annotator=annotator)
    return submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key=key, text=text,
                                            rationale=rationale)


@pytest.fixture
def reviewer(member):
    return member(Role.REVIEWER)


def review_url(project):
    return f"/projects/{project.pk}/review/"


def test_queue_shows_the_oldest_demonstration_inert_with_its_critique(client, project, annotator, reviewer):
    first = demo_submission(project, annotator, key="a")
    demo_submission(project, annotator, text="second", key="b")
    Critique.objects.create(submission=first, model_version=model_version(), instruction_version=first.instruction_version,
                            status="done", verdict="revise", scores={"helpful": 5, "truthful": 2, "harmless": 7},
                            issues=[{"quote": "<b>7</b>", "problem": "<script>x</script>wrong", "suggestion": "Say 9"}])
    client.force_login(reviewer)
    body = client.get(review_url(project)).content.decode()
    assert f'data-submission="{first.pk}"' in body and "2 waiting" in body
    assert "Boil it &lt;b&gt;7&lt;/b&gt; minutes." in body and "kept it short" in body
    assert "How do I boil an egg?" in body and "Made under instructions v1" in body
    assert 'verdict-revise' in body and '<span class="score s2">2</span>' in body
    assert "&lt;script&gt;x&lt;/script&gt;wrong" in body and "<script>x" not in body
    # The fix editor is prefilled with the reply (escaped by the template, a textarea's text).
    assert ">Boil it &lt;b&gt;7&lt;/b&gt; minutes.</textarea>" in body


@pytest.mark.parametrize("status,expected", [("pending", "Critique pending"), ("failed", "Critique failed: timed out")])
def test_critique_pending_or_failed_says_so(client, project, annotator, reviewer, status, expected):
    sub = demo_submission(project, annotator)
    Critique.objects.create(submission=sub, model_version=model_version(), instruction_version=sub.instruction_version,
                            status=status, error="timed out" if status == "failed" else "")
    client.force_login(reviewer)
    assert expected in client.get(review_url(project)).content.decode()


def test_accept_then_the_next_item(client, project, annotator, reviewer):
    first = demo_submission(project, annotator, key="a")
    second = demo_submission(project, annotator, text="second", key="b")
    client.force_login(reviewer)
    response = client.post(review_url(project), {"submission": first.pk, "decision": "accept", "text": "ignored"})
    assert response.status_code == 302 and response.url == review_url(project)
    first.refresh_from_db()
    assert first.status == "accepted" and Review.objects.get(submission=first).fixed_reply is None
    page = client.get(review_url(project)).content.decode()
    assert f'data-submission="{second.pk}"' in page and "Accepted: submission" in page


def test_reject_needs_a_reason_and_keeps_the_item(client, project, annotator, reviewer):
    sub = demo_submission(project, annotator)
    client.force_login(reviewer)
    response = client.post(review_url(project), {"submission": sub.pk, "decision": "reject", "reason": "  "})
    assert response.status_code == 400 and b"Say why the work is rejected" in response.content
    assert f'data-submission="{sub.pk}"'.encode() in response.content
    assert Submission.objects.get(pk=sub.pk).status == "submitted"
    response = client.post(review_url(project), {"submission": sub.pk, "decision": "reject", "reason": "Too short."})
    assert response.status_code == 302
    sub.refresh_from_db()
    assert sub.status == "rejected" and Review.objects.get(submission=sub).reason == "Too short."
    assert Task.objects.get(pk=sub.task_id).submission_count == 0  # the slot is open again
    assert b"Nothing waits for review" in client.get(review_url(project)).content


def test_fix_keeps_the_corrected_reply(client, project, annotator, reviewer):
    sub = demo_submission(project, annotator)
    client.force_login(reviewer)
    client.post(review_url(project), {"submission": sub.pk, "decision": "fix", "text": "Boil it 9 minutes."})
    review = Review.objects.select_related("fixed_reply").get(submission=sub)
    assert review.decision == "fix" and review.fixed_reply.content == "Boil it 9 minutes."
    assert review.fixed_reply.source == CandidateReply.Source.HUMAN
    assert Submission.objects.get(pk=sub.pk).status == "accepted"


def test_comparison_shows_letters_as_the_annotator_saw_them_and_ties(client, project, annotator, reviewer):
    task, replies = comparison_task(project)
    lease = leases.lease_next_task(project=project, annotator=annotator)
    shown = ranking_order(replies, lease.pk)
    a, b, c, d = (r.pk for r in shown)
    sub = submissions.submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="k",
                                     ranking=[[b, a], [d], [c]], ratings={str(a): {"helpful": 6}},
                                     flags={str(c): ["factually_wrong"]}, rationale="A and B tie; C invents.")
    client.force_login(reviewer)
    body = client.get(review_url(project)).content.decode()
    assert '<code class="ranking-summary" id="ranking-summary">A = B &gt; D &gt; C</code>' in body
    assert "A and B tie; C invents." in body and "factually wrong" in body and "Helpful 6" in body
    assert 'id="fix-box"' not in body  # rankings cannot be fixed
    response = client.post(review_url(project), {"submission": sub.pk, "decision": "fix", "text": "x"})
    assert response.status_code == 400 and b"Only demonstrations can be fixed" in response.content


def test_nobody_reviews_their_own_work(client, project, admin_user, reviewer):
    sub = demo_submission(project, admin_user)
    client.force_login(admin_user)
    assert b"Nothing waits for review" in client.get(review_url(project)).content  # not in my queue
    response = client.post(review_url(project), {"submission": sub.pk, "decision": "accept"}, follow=True)
    assert b"Nobody reviews their own work" in response.content
    assert Submission.objects.get(pk=sub.pk).status == "submitted"


def test_already_reviewed_moves_on(client, project, annotator, reviewer, member):
    sub = demo_submission(project, annotator)
    reviews.review_submission(submission_id=sub.pk, reviewer=member(Role.ADMIN), decision="accept")
    client.force_login(reviewer)
    response = client.post(review_url(project), {"submission": sub.pk, "decision": "reject", "reason": "late"},
                           follow=True)
    assert b"already accepted" in response.content and Review.objects.filter(submission=sub).count() == 1


def test_a_submission_of_another_project_is_not_reviewed_here(client, project, reviewer):
    other = ProjectFactory()
    someone = UserFactory()
    MembershipFactory(project=other, user=someone, role=Role.ANNOTATOR)
    sub = demo_submission(other, someone)
    client.force_login(reviewer)
    response = client.post(review_url(project), {"submission": sub.pk, "decision": "accept"}, follow=True)
    assert b"No such submission in this project" in response.content
    assert Submission.objects.get(pk=sub.pk).status == "submitted"


def test_skip_shows_the_next_one(client, project, annotator, reviewer):
    first = demo_submission(project, annotator, key="a")
    second = demo_submission(project, annotator, text="second", key="b")
    client.force_login(reviewer)
    assert f'data-submission="{second.pk}"' in client.get(review_url(project) + f"?after={first.pk}").content.decode()
    assert b"Nothing after the ones you skipped" in client.get(review_url(project) + f"?after={second.pk}").content


def test_home_lists_rejected_work_with_the_reason_inert(client, project, annotator, reviewer):
    sub = demo_submission(project, annotator)
    reviews.review_submission(submission_id=sub.pk, reviewer=reviewer, decision="reject",
                              reason="<img src=x onerror=alert(1)> cite\u202e a source")
    client.force_login(annotator)
    body = client.get("/").content.decode()
    assert "Returned to you" in body and f'data-submission="{sub.pk}"' in body and reviewer.username in body
    assert "&lt;img src=x onerror=alert(1)&gt; cite" in body and "⟨U+202E⟩" in body and "<img src=x" not in body
    client.force_login(reviewer)  # nothing of theirs was returned
    assert "Returned to you" not in client.get("/").content.decode()


def test_home_links_review_queue_and_jobs_for_staff(client, project, reviewer, annotator):
    client.force_login(reviewer)
    body = client.get("/").content.decode()
    assert f"/projects/{project.pk}/review/" in body and f"/projects/{project.pk}/jobs/" in body
    client.force_login(annotator)
    body = client.get("/").content.decode()
    assert "/review/" not in body and "/jobs/" not in body


def test_jobs_page_lists_jobs_and_offers_forms_to_admins_and_engineers_only(client, project, member):
    ModelJob.objects.create(project=project, kind="drafting", model_version=model_version(), status="running",
                            total=10, done=3, failed=1)
    url = f"/projects/{project.pk}/jobs/"
    client.force_login(member(Role.ENGINEER))
    body = client.get(url).content.decode()
    assert 'value="4"' in body and "4 / 10" in body and 'id="drafting-form"' in body and "cancel-job" in body
    assert f'data-api-base="/api/projects/{project.pk}/model-jobs/"' in body
    client.force_login(member(Role.REVIEWER))
    body = client.get(url).content.decode()
    assert "4 / 10" in body and 'id="drafting-form"' not in body and "cancel-job" not in body
