"""Row locks taken by the labelling services must never block a concurrent commit's foreign-key
checks. Django's foreign keys are deferred: at COMMIT, PostgreSQL takes FOR KEY SHARE on every
referenced row (project, task, lease). A service holding FOR UPDATE on such a row made those
commits wait, and next-task deadlocked against skip under load (bench/load.py found it). Each test
holds a service's locks open inside an outer transaction and checks, from a second connection, that
the FK check of another transaction would pass at once."""
import psycopg
import pytest
from django.db import connection, transaction

from annotations.services.instructions import publish_instructions
from annotations.services.leases import lease_next_task, reclaim_expired_leases, skip_lease
from annotations.services.projects import update_project_settings
from annotations.services.submissions import submit_demonstration
from tests.factories import TaskFactory
from tests.processes import database_url

pytestmark = pytest.mark.django_db(transaction=True)


def assert_key_share_free(**rows):
    """What a deferred FK check does for rows referencing these: must not wait."""
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other:
        other.execute("SET lock_timeout = '1s'")
        for table, pk in rows.items():
            other.execute(f"SELECT 1 FROM annotations_{table} WHERE id = %s FOR KEY SHARE", (pk,))


def test_skip_and_submit_lock_no_referenced_row_against_fk_checks(project, annotator):
    TaskFactory.create_batch(2, project=project)
    first = lease_next_task(project=project, annotator=annotator)
    second = lease_next_task(project=project, annotator=annotator)
    with transaction.atomic():
        skip_lease(lease_id=first.pk, annotator=annotator, reason="Not my language")
        assert_key_share_free(project=project.pk, task=first.task_id, lease=first.pk)
    with transaction.atomic():
        submit_demonstration(lease_id=second.pk, annotator=annotator, idempotency_key="k", text="An answer.")
        assert_key_share_free(project=project.pk, task=second.task_id, lease=second.pk)


def test_next_task_and_reclaim_lock_no_referenced_row_against_fk_checks(project, annotator):
    TaskFactory.create_batch(2, project=project)
    with transaction.atomic():
        lease = lease_next_task(project=project, annotator=annotator)
        assert_key_share_free(project=project.pk, task=lease.task_id)
    from datetime import timedelta

    from django.utils import timezone

    with transaction.atomic():
        reclaim_expired_leases(project=project, now=timezone.now() + timedelta(seconds=project.lease_seconds + 1))
        assert_key_share_free(project=project.pk, task=lease.task_id, lease=lease.pk)


def test_admin_changes_lock_the_project_without_blocking_fk_checks(project, admin_user):
    with transaction.atomic():
        update_project_settings(project=project, overlap=2)
        assert_key_share_free(project=project.pk)
    with transaction.atomic():
        publish_instructions(project=project, body="New rules.", published_by=admin_user)
        assert_key_share_free(project=project.pk)
