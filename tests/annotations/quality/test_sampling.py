"""Which submissions are sampled for review: new annotators and redone work always, otherwise the
project's rate, drawn independently of anything the client sends."""
import inspect
import random

import pytest

from annotations.models import Project, Submission
from annotations.quality import sampling
from annotations.services.leases import lease_next_task
from annotations.services.submissions import submit_demonstration
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def settings_(project, **fields):
    Project.objects.filter(pk=project.pk).update(**fields)
    project.refresh_from_db()


def test_rate_new_annotators_and_redone_work(project, annotator):
    TaskFactory.create_batch(2, project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    settings_(project, review_rate=0.0, review_new_until=1)
    assert sampling.needs_review(project=project, annotator=annotator, lease_id=lease.pk)  # 0 accepted < 1
    sub = submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="a", text="x")
    Submission.objects.filter(pk=sub.pk).update(status="accepted")
    assert not sampling.needs_review(project=project, annotator=annotator, lease_id=lease.pk)  # rate 0, not new
    Submission.objects.filter(pk=sub.pk).update(status="rejected")
    settings_(project, review_new_until=0)
    assert sampling.needs_review(project=project, annotator=annotator, lease_id=lease.pk)  # a redo: always
    other = lease_next_task(project=project, annotator=annotator)
    settings_(project, review_rate=1.0)
    assert sampling.needs_review(project=project, annotator=annotator, lease_id=other.pk)


def test_the_rate_is_a_fair_draw_the_client_cannot_steer(project, annotator):
    settings_(project, review_rate=0.25, review_new_until=0)
    TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    rng = random.Random(3)
    share = sum(sampling.needs_review(project=project, annotator=annotator, lease_id=lease.pk, rng=rng)
                for _ in range(4000)) / 4000
    assert 0.22 < share < 0.28
    # Nothing the client sends takes part in the draw, and the default source is the OS's.
    assert set(inspect.signature(sampling.needs_review).parameters) == {"project", "annotator", "lease_id", "rng"}
    assert isinstance(sampling._rng, random.SystemRandom)
