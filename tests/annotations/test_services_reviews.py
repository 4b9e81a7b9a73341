import pytest

from annotations.errors import InvalidInput, NoTaskAvailable, PermissionDenied
from annotations.models import Lease, Project, Review, Role, Submission, Task
from annotations.services.leases import lease_next_task
from annotations.services.reviews import AlreadyReviewed, review_submission
from annotations.services.submissions import submit_demonstration, submit_ranking
from tests.factories import TaskFactory, comparison_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def submitted(project, annotator):
    TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    return submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k", text="Paris is in Italy.")


def test_reject_in_reassign_mode_needs_a_reason_and_reopens_the_task(submitted, member, project):
    Project.objects.filter(pk=project.pk).update(on_reject=Project.OnReject.REASSIGN)
    reviewer = member(Role.REVIEWER)
    with pytest.raises(InvalidInput, match="Say why"):
        review_submission(submission_id=submitted.pk, reviewer=reviewer, decision="reject", reason="  ")
    review = review_submission(submission_id=submitted.pk, reviewer=reviewer, decision="reject",
                               reason="Paris is in France.")
    assert Submission.objects.get(pk=submitted.pk).status == "rejected" and review.reason == "Paris is in France."
    task = Task.objects.get(pk=submitted.task_id)
    assert (task.submission_count, task.state) == (0, Task.State.OPEN)
    assert lease_next_task(project=project, annotator=member()).task_id == task.pk  # someone else redoes it


def test_reject_returns_the_work_to_its_annotator_who_redoes_it(submitted, member, project, annotator):
    """Default on_reject=return: the annotator's lease comes back with the reason, the slot is
    theirs (nobody else gets the task), and the redone submission is reviewed again."""
    Project.objects.filter(pk=project.pk).update(review_rate=0.5, review_new_until=0)
    reviewer = member(Role.REVIEWER)
    review_submission(submission_id=submitted.pk, reviewer=reviewer, decision="reject", reason="Paris is in France.")
    task = Task.objects.get(pk=submitted.task_id)
    assert (task.submission_count, task.lease_count, task.state) == (0, 1, Task.State.BUSY)
    lease = Lease.objects.get(pk=submitted.lease_id)
    assert lease.status == Lease.Status.ACTIVE and lease.closed_at is None
    with pytest.raises(NoTaskAvailable):
        lease_next_task(project=project, annotator=member())  # the slot is held for the annotator
    redo = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k2",
                                text="Paris is in France.")
    assert redo.pk != submitted.pk and redo.lease_id == lease.pk and redo.review_required
    task.refresh_from_db()
    assert (task.submission_count, task.lease_count, task.state) == (1, 0, Task.State.DONE)
    review_submission(submission_id=redo.pk, reviewer=reviewer, decision="accept")
    task.refresh_from_db()
    assert task.accepted_count == 1 and task.completed_at is not None


def test_fix_keeps_the_correction_beside_the_original(submitted, member):
    reviewer = member(Role.REVIEWER)
    review = review_submission(submission_id=submitted.pk, reviewer=reviewer, decision="fix",
                               reason="wrong country", fixed_text="Paris is in France.")
    assert review.fixed_reply.content == "Paris is in France." and review.fixed_reply.parent_id == submitted.reply_id
    assert Submission.objects.get(pk=submitted.pk).reply.content == "Paris is in Italy."
    assert Submission.objects.get(pk=submitted.pk).status == "accepted"


def test_accept_and_no_second_decision(submitted, member):
    reviewer = member(Role.REVIEWER)
    review_submission(submission_id=submitted.pk, reviewer=reviewer, decision="accept")
    with pytest.raises(AlreadyReviewed):
        review_submission(submission_id=submitted.pk, reviewer=reviewer, decision="reject", reason="changed my mind")
    assert Review.objects.count() == 1


def test_annotators_and_authors_cannot_review(submitted, member, annotator):
    with pytest.raises(PermissionDenied):
        review_submission(submission_id=submitted.pk, reviewer=member(Role.ANNOTATOR), decision="accept")
    with pytest.raises(PermissionDenied):
        review_submission(submission_id=submitted.pk, reviewer=annotator, decision="accept")


def test_rankings_cannot_be_fixed(project, annotator, member):
    task = comparison_task(project, k=2)
    lease = lease_next_task(project=project, annotator=annotator)
    sub = submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="r",
                         ranking=[list(task.replies.values_list("pk", flat=True))])
    with pytest.raises(InvalidInput):
        review_submission(submission_id=sub.pk, reviewer=member(Role.REVIEWER), decision="fix", fixed_text="x")


def test_rejected_work_shows_its_reason_to_the_annotator_over_the_api(submitted, member, api, project, annotator):
    reviewer = member(Role.REVIEWER)
    r = api(reviewer).post(f"/api/projects/{project.pk}/submissions/{submitted.pk}/review/",
                           {"decision": "reject", "reason": "Check the facts."}, format="json")
    assert r.status_code == 201
    mine = api(annotator).get(f"/api/projects/{project.pk}/submissions/{submitted.pk}/").json()
    assert mine["status"] == "rejected" and mine["review"]["reason"] == "Check the facts."
    assert mine["review"]["reviewer"] == reviewer.username
    again = api(reviewer).post(f"/api/projects/{project.pk}/submissions/{submitted.pk}/review/",
                               {"decision": "accept"}, format="json")
    assert (again.status_code, again.json()["error"]) == (409, "already_reviewed")
