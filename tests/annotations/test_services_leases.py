import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from annotations.errors import LeaseCapReached, LeaseNotActive, NoInstructions, NoTaskAvailable, PermissionDenied
from annotations.models import Lease, Role, Task
from annotations.services.leases import lease_next_task, reclaim_expired_leases, release_lease, skip_lease
from annotations.services.projects import update_project_settings
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_next_task_leases_oldest_open_task_and_counts_it(project, annotator):
    first, second = TaskFactory(project=project), TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    assert lease.task_id == first.pk
    first.refresh_from_db()
    assert (first.lease_count, first.state) == (1, Task.State.BUSY)
    assert Lease.objects.get(pk=lease.pk).instruction_version_id == project.current_instructions_id
    assert lease_next_task(project=project, annotator=annotator).task_id == second.pk


def test_nobody_gets_the_same_task_twice_even_after_release(project, annotator):
    project = update_project_settings(project=project, overlap=2)
    task = TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    release_lease(lease_id=lease.pk, annotator=annotator)
    with pytest.raises(NoTaskAvailable):
        lease_next_task(project=project, annotator=annotator)
    task.refresh_from_db()
    assert (task.lease_count, task.state) == (0, Task.State.OPEN)


def test_overlap_lets_k_annotators_hold_a_task_and_no_more(project, member):
    project = update_project_settings(project=project, overlap=2)
    task = TaskFactory(project=project)
    a, b, c = member(), member(), member()
    assert lease_next_task(project=project, annotator=a).task_id == task.pk
    assert lease_next_task(project=project, annotator=b).task_id == task.pk
    with pytest.raises(NoTaskAvailable):
        lease_next_task(project=project, annotator=c)
    task.refresh_from_db()
    assert (task.lease_count, task.state) == (2, Task.State.BUSY)


def test_pending_cap_limits_open_leases(project, annotator):
    project = update_project_settings(project=project, pending_cap=2)
    TaskFactory.create_batch(3, project=project)
    lease_next_task(project=project, annotator=annotator)
    lease_next_task(project=project, annotator=annotator)
    with pytest.raises(LeaseCapReached):
        lease_next_task(project=project, annotator=annotator)


def test_expired_lease_returns_task_to_pool(project, member):
    task = TaskFactory(project=project)
    first, second = member(), member()
    now = timezone.now()
    lease = lease_next_task(project=project, annotator=first, now=now)
    with pytest.raises(NoTaskAvailable):
        lease_next_task(project=project, annotator=second, now=now + timedelta(seconds=project.lease_seconds - 1))
    later = now + timedelta(seconds=project.lease_seconds + 1)
    again = lease_next_task(project=project, annotator=second, now=later)
    assert again.task_id == task.pk
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.EXPIRED
    task.refresh_from_db()
    assert task.lease_count == 1


def test_a_lease_past_its_time_stops_counting_against_the_cap_before_it_is_reclaimed(project, annotator):
    project = update_project_settings(project=project, pending_cap=1)
    TaskFactory.create_batch(2, project=project)
    now = timezone.now()
    first = lease_next_task(project=project, annotator=annotator, now=now)
    with pytest.raises(LeaseCapReached):
        lease_next_task(project=project, annotator=annotator, now=now)
    later = now + timedelta(seconds=project.lease_seconds + 1)
    second = lease_next_task(project=project, annotator=annotator, now=later)
    assert second.task_id != first.task_id
    # Free tasks were left, so nothing had to be reclaimed on the way: the old lease waits for beat.
    assert Lease.objects.get(pk=first.pk).status == Lease.Status.ACTIVE
    assert reclaim_expired_leases(now=later) == 1
    assert Lease.objects.get(pk=first.pk).status == Lease.Status.EXPIRED


def test_a_fresh_lease_brings_its_task_as_stored(project, annotator):
    conversation = [{"role": "user", "content": "Hi \u202e there"}, {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Ünïcode and \"quotes\""}]
    task = TaskFactory(project=project, conversation=conversation)
    lease = lease_next_task(project=project, annotator=annotator)
    assert lease.task.pk == task.pk
    assert lease.task.kind == task.kind
    assert lease.task.conversation == conversation
    task.refresh_from_db()
    # Fields the statement did not return are loaded on use, never left at their defaults.
    assert lease.task.lease_count == task.lease_count == 1
    assert lease.task.content_hash == task.content_hash


def test_reclaim_across_projects_is_idempotent(member):
    p1, p2 = ProjectFactory(), ProjectFactory()
    users = []
    for p in (p1, p2):
        TaskFactory(project=p)
        u = UserFactory()
        MembershipFactory(project=p, user=u)
        users.append(u)
        lease_next_task(project=p, annotator=u)
    later = timezone.now() + timedelta(days=30)
    assert reclaim_expired_leases(now=later) == 2
    assert reclaim_expired_leases(now=later) == 0
    assert set(Task.objects.values_list("state", "lease_count")) == {(Task.State.OPEN, 0)}


def test_skip_records_reason_and_frees_the_slot(project, member):
    task = TaskFactory(project=project)
    a, b = member(), member()
    lease = lease_next_task(project=project, annotator=a)
    skipped = skip_lease(lease_id=lease.pk, annotator=a, reason="not my language")
    assert (skipped.status, skipped.reason) == (Lease.Status.SKIPPED, "not my language")
    assert lease_next_task(project=project, annotator=b).task_id == task.pk
    with pytest.raises(LeaseNotActive):
        skip_lease(lease_id=lease.pk, annotator=a, reason="again")


def test_engineers_and_outsiders_cannot_lease(project, member):
    TaskFactory(project=project)
    with pytest.raises(PermissionDenied):
        lease_next_task(project=project, annotator=member(Role.ENGINEER))
    with pytest.raises(PermissionDenied):
        lease_next_task(project=project, annotator=UserFactory())


def test_no_lease_without_published_instructions(db):
    project = ProjectFactory(instructions=False)
    user = UserFactory()
    MembershipFactory(project=project, user=user)
    TaskFactory(project=project)
    with pytest.raises(NoInstructions):
        lease_next_task(project=project, annotator=user)


def test_lowering_overlap_recomputes_states(project, member):
    project = update_project_settings(project=project, overlap=3)
    task = TaskFactory(project=project)
    lease_next_task(project=project, annotator=member())
    lease_next_task(project=project, annotator=member())
    update_project_settings(project=project, overlap=2)
    task.refresh_from_db()
    assert task.state == Task.State.BUSY


@pytest.mark.django_db(transaction=True)
def test_concurrent_next_task_never_over_assigns():
    """20 annotators in 20 threads (own connections) race for 30 tasks with overlap 2, three
    requests each: no task above its overlap, nobody twice, and every slot filled."""
    project = ProjectFactory()
    project = update_project_settings(project=project, overlap=2, pending_cap=5)
    TaskFactory.create_batch(30, project=project)
    annotators = [UserFactory() for _ in range(20)]
    for user in annotators:
        MembershipFactory(project=project, user=user)
    barrier = threading.Barrier(len(annotators))
    results, errors = [], []

    def work(user):
        try:
            barrier.wait()
            for _ in range(3):
                try:
                    lease = lease_next_task(project=project, annotator=user)
                    results.append((user.pk, lease.task_id))
                except NoTaskAvailable:
                    pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in annotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    per_task = Counter(task for _, task in results)
    assert len(results) == 60  # 30 tasks x overlap 2, all handed out
    assert max(per_task.values()) == 2
    assert len(set(results)) == len(results)  # no (annotator, task) pair twice
    db_counts = dict(Task.objects.filter(project=project).values_list("id", "lease_count"))
    assert db_counts == dict(per_task)
    assert connection.vendor == "postgresql"


def test_next_task_can_be_limited_to_kinds(project, annotator):
    from annotations.models import TaskKind

    demo = TaskFactory(project=project)
    red = TaskFactory(project=project, kind=TaskKind.RED_TEAM, conversation=[])
    assert lease_next_task(project=project, annotator=annotator, kinds=[TaskKind.RED_TEAM]).task_id == red.pk
    with pytest.raises(NoTaskAvailable):
        lease_next_task(project=project, annotator=annotator, kinds=[TaskKind.RED_TEAM])
    assert lease_next_task(project=project, annotator=annotator,
                           kinds=[TaskKind.DEMONSTRATION, TaskKind.COMPARISON]).task_id == demo.pk
