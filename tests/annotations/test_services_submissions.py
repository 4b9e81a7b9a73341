from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.errors import IdempotencyConflict, InvalidInput, LeaseExpired, LeaseNotActive, NotFound
from annotations.models import CandidateReply, Lease, ModelVersion, Submission, Task
from annotations.services.instructions import publish_instructions
from annotations.services.leases import lease_next_task, reclaim_expired_leases
from annotations.services.projects import update_project_settings
from annotations.services.submissions import submit_demonstration, submit_ranking
from annotations.signals import submission_created
from tests.factories import ReplyFactory, TaskFactory, comparison_task

pytestmark = pytest.mark.django_db


def test_demonstration_records_instruction_version_it_was_made_under(project, annotator, admin_user):
    TaskFactory(project=project)
    v1 = project.current_instructions
    lease = lease_next_task(project=project, annotator=annotator)
    publish_instructions(project=project, body="# v2", published_by=admin_user)
    sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k1", text="An answer.")
    assert sub.instruction_version_id == v1.pk
    assert sub.reply.source == CandidateReply.Source.HUMAN
    task = Task.objects.get(pk=lease.task_id)
    assert (task.submission_count, task.lease_count, task.state) == (1, 0, Task.State.DONE)
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.SUBMITTED


def test_same_idempotency_key_stores_one_submission(project, annotator):
    TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    first = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="click", text="Hi.")
    again = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="click", text="Hi.")
    assert again.pk == first.pk and getattr(again, "replayed", False)
    assert Submission.objects.count() == 1
    assert Task.objects.get(pk=lease.task_id).submission_count == 1


def test_key_reused_for_another_task_is_a_conflict(project, annotator):
    project = update_project_settings(project=project, pending_cap=2)
    TaskFactory.create_batch(2, project=project)
    a = lease_next_task(project=project, annotator=annotator)
    b = lease_next_task(project=project, annotator=annotator)
    submit_demonstration(lease_id=a.pk, annotator=annotator, idempotency_key="same", text="One.")
    with pytest.raises(IdempotencyConflict):
        submit_demonstration(lease_id=b.pk, annotator=annotator, idempotency_key="same", text="Two.")


def test_second_submit_with_new_key_is_refused(project, annotator):
    TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="a", text="One.")
    with pytest.raises(LeaseNotActive):
        submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="b", text="Two.")


def test_someone_elses_lease_is_not_found(project, member):
    TaskFactory(project=project)
    owner, other = member(), member()
    lease = lease_next_task(project=project, annotator=owner)
    with pytest.raises(NotFound):
        submit_demonstration(lease_id=lease.pk, annotator=other, idempotency_key="x", text="Mine now.")


def test_edited_draft_records_sources_and_edit_distance(project, annotator):
    task = TaskFactory(project=project)
    model = ModelVersion.objects.create(name="tiny")
    d1 = ReplyFactory(task=task, source="model", model_version=model, content="The sky is blue.")
    d2 = ReplyFactory(task=task, source="model", model_version=model, content="Completely different text here.")
    lease = lease_next_task(project=project, annotator=annotator)
    sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="e",
                               text="The sky is blue!", draft_ids=[d1.pk, d2.pk], time_spent_ms=4200)
    assert sub.draft_sources[0] == {"reply_id": d1.pk, "edit_distance": 1}
    assert sub.draft_sources[1]["edit_distance"] > 10
    assert sub.reply.source == CandidateReply.Source.EDITED and sub.reply.parent_id == d1.pk
    assert sub.time_spent_ms == 4200


def test_draft_of_another_task_is_rejected_and_nothing_stored(project, annotator):
    TaskFactory(project=project)
    foreign = ReplyFactory(source="model", model_version=ModelVersion.objects.create(name="m"))
    lease = lease_next_task(project=project, annotator=annotator)
    with pytest.raises(InvalidInput):
        submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="f", text="x",
                             draft_ids=[foreign.pk])
    assert Submission.objects.count() == 0
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.ACTIVE


def test_ranking_with_tie_is_stored_as_tie_groups(project, annotator):
    task = comparison_task(project, k=4)
    a, b, c, d = task.replies.values_list("pk", flat=True)
    lease = lease_next_task(project=project, annotator=annotator)
    sub = submit_ranking(
        lease_id=lease.pk, annotator=annotator, idempotency_key="r", ranking=[[b], [d, a], [c]],
        ratings={str(b): {"helpful": 7, "truthful": 6, "harmless": 7}, a: {"helpful": 2}},
        flags={c: ["factually_wrong", "unsafe"]}, rationale="b is best",
    )
    assert sub.ranking == [[b], sorted([a, d]), [c]]
    assert sub.ratings == {str(b): {"helpful": 7, "truthful": 6, "harmless": 7}, str(a): {"helpful": 2}}
    assert sub.flags == {str(c): ["factually_wrong", "unsafe"]}


@pytest.mark.parametrize(
    "make_ranking, message",
    [
        (lambda a, b, c: [[a], [b]], "missing"),
        (lambda a, b, c: [[a], [b], [c], [a]], "more than once"),
        (lambda a, b, c: [[a, b, c, 999999]], "unknown"),
        (lambda a, b, c: [[a], [], [b, c]], "non-empty"),
        (lambda a, b, c: [], "non-empty"),
    ],
)
def test_bad_rankings_are_refused_with_a_reason(project, annotator, make_ranking, message):
    task = comparison_task(project, k=3)
    lease = lease_next_task(project=project, annotator=annotator)
    with pytest.raises(InvalidInput, match=message):
        submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="r",
                       ranking=make_ranking(*task.replies.values_list("pk", flat=True)))
    assert Submission.objects.count() == 0


@pytest.mark.parametrize("ratings", [{"R": {"helpful": 8}}, {"R": {"helpful": 0}}, {"R": {"funny": 3}},
                                     {"R": {"helpful": True}}, {"999999": {"helpful": 3}}])
def test_bad_ratings_are_refused(project, annotator, ratings):
    task = comparison_task(project, k=2)
    ids = list(task.replies.values_list("pk", flat=True))
    ratings = {(str(ids[0]) if k == "R" else k): v for k, v in ratings.items()}
    lease = lease_next_task(project=project, annotator=annotator)
    with pytest.raises(InvalidInput):
        submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="r", ranking=[ids], ratings=ratings)


def test_unknown_flag_is_refused(project, annotator):
    task = comparison_task(project, k=2)
    ids = list(task.replies.values_list("pk", flat=True))
    lease = lease_next_task(project=project, annotator=annotator)
    with pytest.raises(InvalidInput):
        submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="r", ranking=[ids],
                       flags={ids[0]: ["boring"]})


def test_late_submit_is_kept_when_the_slot_is_still_free(project, annotator):
    TaskFactory(project=project)
    now = timezone.now()
    lease = lease_next_task(project=project, annotator=annotator, now=now)
    reclaim_expired_leases(now=now + timedelta(seconds=project.lease_seconds + 5))
    sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="late", text="Still here.")
    task = Task.objects.get(pk=lease.task_id)
    assert (task.lease_count, task.submission_count, task.state) == (0, 1, Task.State.DONE)
    assert sub.pk


def test_late_submit_after_slot_was_retaken_says_expired(project, member):
    TaskFactory(project=project)
    a, b = member(), member()
    now = timezone.now()
    lease = lease_next_task(project=project, annotator=a, now=now)
    lease_next_task(project=project, annotator=b, now=now + timedelta(seconds=project.lease_seconds + 5))
    with pytest.raises(LeaseExpired):
        submit_demonstration(lease_id=lease.pk, annotator=a, idempotency_key="late", text="Too late.")
    assert Submission.objects.count() == 0


def test_wrong_kind_payload_is_refused(project, annotator):
    comparison_task(project, k=2)
    lease = lease_next_task(project=project, annotator=annotator)
    with pytest.raises(InvalidInput):
        submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k", text="Not a ranking.")


@pytest.mark.django_db(transaction=True)
def test_submission_signal_fires_after_commit(project, annotator):
    TaskFactory(project=project)
    seen = []

    def receiver(sender, submission_id, **kwargs):
        seen.append(submission_id)

    submission_created.connect(receiver)
    try:
        lease = lease_next_task(project=project, annotator=annotator)
        sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="s", text="Done.")
    finally:
        submission_created.disconnect(receiver)
    assert seen == [sub.pk]
