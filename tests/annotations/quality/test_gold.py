"""Gold tasks end to end through the services: served at the project's rate, scored against the
reference, kept out of the pool, completion and the review queue; a rule pauses a poor annotator."""
import pytest

from annotations import selectors
from annotations.errors import AnnotatorPaused, InvalidInput, NoTaskAvailable
from annotations.models import Membership, Project, Role, Submission, Task
from annotations.quality import gold, rules
from annotations.quality.models import GoldScore, Notification, QualityRule
from annotations.services.leases import lease_next_task, reclaim_expired_leases
from annotations.services.reviews import review_submission
from annotations.services.submissions import submit_demonstration, submit_ranking
from tests.factories import TaskFactory, comparison_task

pytestmark = pytest.mark.django_db


def ids(task):
    return sorted(task.replies.filter(for_ranking=True).values_list("pk", flat=True))


def set_rate(project, **fields):
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()


def test_gold_task_leaves_the_pool_and_is_served_only_at_the_gold_rate(project, member):
    normal, golden = comparison_task(project), comparison_task(project)
    a, b, c = ids(golden)
    gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=[[a], [b, c]])
    assert Task.objects.get(pk=golden.pk).state == Task.State.GOLD
    first = member()
    assert lease_next_task(project=project, annotator=first).task_id == normal.pk  # rate 0: never gold
    with pytest.raises(NoTaskAvailable):
        lease_next_task(project=project, annotator=first)
    set_rate(project, gold_rate=1.0)
    second = member()
    assert lease_next_task(project=project, annotator=second).task_id == golden.pk  # rate 1: gold first
    # Gold has no overlap limit: everyone may get it once, and it never becomes busy or done
    for _ in range(3):
        assert lease_next_task(project=project, annotator=member()).task_id == golden.pk
    assert Task.objects.get(pk=golden.pk).state == Task.State.GOLD


def test_gold_submissions_are_scored_and_kept_out_of_completion_and_review(project, annotator, member):
    set_rate(project, gold_rate=1.0, overlap=1)
    golden = comparison_task(project)
    a, b, c = ids(golden)
    gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=[[a], [b], [c]],
                  flags={})
    lease = lease_next_task(project=project, annotator=annotator)
    sub = submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="g", ranking=[[c], [b], [a]])
    assert not sub.review_required
    score = GoldScore.objects.get(submission=sub)
    assert score.ranking_tau == pytest.approx(-1) and score.flags_exact == 1 and score.score == pytest.approx(0.5)
    task = Task.objects.get(pk=golden.pk)
    assert (task.state, task.accepted_count, task.completed_at) == (Task.State.GOLD, 0, None)
    assert not selectors.review_queue(project=project, reviewer=member(Role.REVIEWER)).exists()
    with pytest.raises(InvalidInput, match="gold"):
        review_submission(submission_id=sub.pk, reviewer=member(Role.REVIEWER), decision="accept")
    # Changing the reference rescores what was already submitted
    gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=[[c], [b], [a]])
    assert GoldScore.objects.get(submission=sub).score == pytest.approx(1.0)


def test_gold_from_an_accepted_submission_is_not_scored_against_itself(project, annotator, member):
    task = TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    source = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="s", text="Reference.")
    review_submission(submission_id=source.pk, reviewer=member(Role.REVIEWER), decision="fix", reason="tone",
                      fixed_text="The fixed reference.")
    reference = gold.set_gold(project=project, task_id=task.pk, created_by=project.created_by,
                              from_submission_id=source.pk)
    assert reference.text == "The fixed reference." and not GoldScore.objects.exists()
    set_rate(project, gold_rate=1.0)
    other = member()
    lease = lease_next_task(project=project, annotator=other)
    assert lease.task_id == task.pk
    sub = submit_demonstration(lease_id=lease.pk, annotator=other, idempotency_key="o", text="The fixed reference!")
    assert GoldScore.objects.get(submission=sub).text_similarity == pytest.approx(1 - 1 / 20)


def test_unset_gold_returns_the_task_to_the_pool_with_its_counts(project, annotator):
    set_rate(project, review_rate=0.0, review_new_until=0, overlap=2)
    task = TaskFactory(project=project)
    gold.set_gold(project=project, task_id=task.pk, created_by=project.created_by, text="ref")
    set_rate(project, gold_rate=1.0)
    lease = lease_next_task(project=project, annotator=annotator)
    submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="x", text="mine")
    task = gold.unset_gold(project=project, task_id=task.pk)
    assert (task.state, task.submission_count, task.accepted_count, task.completed_at) == ("open", 1, 1, None)
    assert not GoldScore.objects.exists()


def test_bad_references_are_refused(project):
    golden = comparison_task(project)
    a, b, c = ids(golden)
    with pytest.raises(InvalidInput, match="every reply"):
        gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=[[a], [b]])
    with pytest.raises(InvalidInput, match="reference ranking"):
        gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=None)
    with pytest.raises(InvalidInput, match="1 to 7"):
        gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=[[a, b, c]],
                      ratings={str(a): {"helpful": 9}})
    demo = TaskFactory(project=project)
    with pytest.raises(InvalidInput, match="reference reply"):
        gold.set_gold(project=project, task_id=demo.pk, created_by=project.created_by, text="  ")
    assert Task.objects.filter(state=Task.State.GOLD).count() == 0


def test_a_rule_pauses_an_annotator_whose_gold_accuracy_falls_and_tells_the_admins(project, annotator, member):
    set_rate(project, gold_rate=1.0)
    rules.create_rule(project=project, created_by=project.created_by, metric="gold_accuracy", threshold=0.6,
                      min_samples=2, window=10)
    golds = [comparison_task(project) for _ in range(3)]
    for task in golds:
        a, b, c = ids(task)
        gold.set_gold(project=project, task_id=task.pk, created_by=project.created_by, ranking=[[a], [b], [c]])
    normal = comparison_task(project)
    for n in range(2):  # two reversed rankings: accuracy 0 over 2 items -> paused
        lease = lease_next_task(project=project, annotator=annotator)
        ranking = [[r] for r in sorted(ids(Task.objects.get(pk=lease.task_id)), reverse=True)]
        submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key=f"r{n}", ranking=ranking)
        if n == 0:
            assert Membership.objects.get(user=annotator, project=project).paused_at is None  # 1 < min_samples
    membership = Membership.objects.get(user=annotator, project=project)
    assert membership.paused_at is not None and "gold accuracy 0.00" in membership.paused_reason
    note = Notification.objects.get(project=project)
    assert note.kind == "annotator_paused" and note.subject == annotator and note.data["items"] == 2
    with pytest.raises(AnnotatorPaused, match="below the quality bar"):
        lease_next_task(project=project, annotator=annotator)
    # Evaluating again neither pauses twice nor notifies twice
    rules.evaluate_rules(project=project, annotator_id=annotator.pk)
    assert Notification.objects.count() == 1
    # Resumed: served again, and the old items no longer count against them
    rules.resume_annotator(project=project, user_id=annotator.pk, by=project.created_by)
    assert Notification.objects.get().read_at is not None
    set_rate(project, gold_rate=0.0)
    assert lease_next_task(project=project, annotator=annotator).task_id == normal.pk


def test_acceptance_rate_rule_notifies_only_once_while_unread(project, annotator, member):
    set_rate(project, on_reject=Project.OnReject.REASSIGN)
    rules.create_rule(project=project, created_by=project.created_by, metric="acceptance_rate", threshold=0.5,
                      min_samples=2, window=5, action="notify")
    reviewer = member(Role.REVIEWER)
    TaskFactory.create_batch(3, project=project)
    for n in range(3):
        lease = lease_next_task(project=project, annotator=annotator)
        sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key=f"k{n}", text="meh")
        review_submission(submission_id=sub.pk, reviewer=reviewer, decision="reject", reason="too short")
    note = Notification.objects.get()
    assert note.kind == "rule_breached" and note.data["value"] == 0 and note.rule.metric == "acceptance_rate"
    assert Membership.objects.get(user=annotator, project=project).paused_at is None  # notify-only


def test_rule_validation(project):
    with pytest.raises(InvalidInput, match="0 to 1"):
        rules.create_rule(project=project, created_by=None, metric="gold_accuracy", threshold=-0.2)
    with pytest.raises(InvalidInput, match="min_samples"):
        rules.create_rule(project=project, created_by=None, metric="gold_accuracy", threshold=0.5, min_samples=9,
                          window=3)
    with pytest.raises(InvalidInput, match="metric"):
        rules.create_rule(project=project, created_by=None, metric="vibes", threshold=0.5)
    assert rules.create_rule(project=project, created_by=None, metric="gold_ranking_tau", threshold=-0.2).pk
    assert QualityRule.objects.count() == 1


def test_expired_gold_lease_is_reclaimed_without_touching_the_gold_state(project, annotator):
    from datetime import timedelta

    from django.utils import timezone

    set_rate(project, gold_rate=1.0)
    task = TaskFactory(project=project)
    gold.set_gold(project=project, task_id=task.pk, created_by=project.created_by, text="ref")
    lease = lease_next_task(project=project, annotator=annotator)
    assert Task.objects.get(pk=task.pk).lease_count == 1
    reclaim_expired_leases(project=project, now=lease.expires_at + timedelta(seconds=1))
    task.refresh_from_db()
    assert (task.lease_count, task.state) == (0, Task.State.GOLD)
    assert Submission.objects.count() == 0 and timezone.now()


def test_gold_is_served_only_within_the_kinds_asked_for(project, annotator):
    set_rate(project, gold_rate=1.0)
    golden = comparison_task(project)
    a, b, c = ids(golden)
    gold.set_gold(project=project, task_id=golden.pk, created_by=project.created_by, ranking=[[a, b, c]])
    demo = TaskFactory(project=project)
    assert lease_next_task(project=project, annotator=annotator, kinds=["demonstration"]).task_id == demo.pk
    assert lease_next_task(project=project, annotator=annotator, kinds=["comparison"]).task_id == golden.pk


def test_admin_quality_actions_and_automatic_pauses_are_in_the_audit_log(project, annotator, member):
    from annotations.models import AuditEntry

    admin = project.created_by
    set_rate(project, gold_rate=1.0)
    task = TaskFactory(project=project)
    gold.set_gold(project=project, task_id=task.pk, created_by=admin, text="ref")
    rule = rules.create_rule(project=project, created_by=admin, metric="gold_accuracy", threshold=0.9,
                             min_samples=1, window=5)
    lease = lease_next_task(project=project, annotator=annotator)
    submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="a", text="something else")
    rules.resume_annotator(project=project, user_id=annotator.pk, by=admin)
    rules.update_rule(project=project, rule_id=rule.pk, actor=admin, active=False)
    rules.delete_rule(project=project, rule_id=rule.pk, actor=admin)
    gold.unset_gold(project=project, task_id=task.pk, actor=admin)
    entries = list(AuditEntry.objects.filter(project=project).order_by("id").values_list("action", "actor_name"))
    assert entries[-7:] == [("gold.set", admin.username), ("quality_rule.changed", admin.username),
                            ("member.paused", ""), ("member.resumed", admin.username),
                            ("quality_rule.changed", admin.username), ("quality_rule.changed", admin.username),
                            ("gold.unset", admin.username)]
