"""The quality pages (analytics, rules, pause/resume, notifications), the gold page, and what an
annotator sees of quality control: a paused notice on the home page, the redo link and the
reviewer's reason on a returned task. Who may open which page is walked by test_permissions."""
from __future__ import annotations

import pytest

from annotations.models import Membership, Project, Role, Task
from annotations.quality import gold, rules
from annotations.quality.models import GoldScore, Notification, QualityRule
from annotations.services import leases, reviews, submissions

from ..factories import TaskFactory, comparison_task

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert(1)</script><img src=x onerror="document.title=1">'


def no_inline_code(body: str) -> None:
    for chunk in body.split("<script")[1:]:
        assert chunk.split(">")[0].strip().startswith("src="), chunk[:80]
    assert " style=" not in body and "<style" not in body and "onerror=" not in body.replace("onerror=&quot;", "")


def test_quality_page_shows_analytics_agreement_and_hostile_text_inert(client, project, member):
    Project.objects.filter(pk=project.pk).update(overlap=2)
    project.refresh_from_db()
    a, b = member(), member()
    for person in (a, b):
        for _ in range(2):
            comparison_task(project)
    for person in (a, b):
        for _ in range(2):
            lease = leases.lease_next_task(project=project, annotator=person)
            ids = sorted(Task.objects.get(pk=lease.task_id).replies.values_list("pk", flat=True))
            submissions.submit_ranking(lease_id=lease.pk, annotator=person, idempotency_key=f"{person.pk}-{lease.pk}",
                                       ranking=[[i] for i in ids], time_spent_ms=42_000)
    rules.pause_annotator(project=project, user_id=b.pk, reason=HOSTILE, by=project.created_by)
    client.force_login(project.created_by)
    response = client.get(f"/projects/{project.pk}/quality/")
    body = response.content.decode()
    assert response.status_code == 200
    assert f'data-annotator="{a.pk}"' in body and f'data-annotator="{b.pk}"' in body
    assert 'class="agreement-project"' in body and "1.000" in body  # identical rankings: alpha = tau = 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body
    assert body.count("Resume</button>") == 1 and "paused by" in body
    no_inline_code(body)
    # A reviewer reads it all but gets no admin forms and no notifications
    reviewer = member(Role.REVIEWER)
    client.force_login(reviewer)
    body = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert "Add rule" not in body and "Resume</button>" not in body and "Notifications" not in body
    assert client.post(f"/projects/{project.pk}/quality/", {"action": "resume", "user_id": b.pk}).status_code == 403
    assert Membership.objects.get(project=project, user=b).paused_at is not None


def test_admin_adds_rules_resumes_and_reads_notifications_through_forms(client, project, member):
    annotator = member()
    client.force_login(project.created_by)
    url = f"/projects/{project.pk}/quality/"
    r = client.post(url, {"action": "add-rule", "metric": "gold_accuracy", "threshold": "0.7", "window": "10",
                          "min_samples": "3", "rule_action": "pause"}, follow=True)
    assert b"Rule added" in r.content
    rule = QualityRule.objects.get(project=project)
    assert (rule.threshold, rule.window, rule.min_samples, rule.active) == (0.7, 10, 3, True)
    r = client.post(url, {"action": "add-rule", "metric": "gold_accuracy", "threshold": "x"}, follow=True)
    assert b"threshold must be a number" in r.content and QualityRule.objects.count() == 1
    client.post(url, {"action": "toggle-rule", "rule_id": rule.pk})
    assert not QualityRule.objects.get(pk=rule.pk).active
    client.post(url, {"action": "pause", "user_id": annotator.pk, "reason": "looks off"})
    note = Notification.objects.get(project=project)
    assert Membership.objects.get(project=project, user=annotator).paused_at is not None
    assert f'data-notification="{note.pk}"'.encode() in client.get(url).content
    client.post(url, {"action": "resume", "user_id": annotator.pk})
    assert Membership.objects.get(project=project, user=annotator).paused_at is None
    assert Notification.objects.get(pk=note.pk).read_at is not None  # resuming settles it
    client.post(url, {"action": "delete-rule", "rule_id": rule.pk})
    assert not QualityRule.objects.exists()
    detail = client.get(f"/projects/{project.pk}/quality/annotators/{annotator.pk}/")
    assert detail.status_code == 200 and annotator.username.encode() in detail.content
    assert client.get(f"/projects/{project.pk}/quality/annotators/999999/").status_code == 404


def test_gold_page_sets_a_reference_by_letters_rescores_and_unsets(client, project, member):
    task = comparison_task(project)
    ids = sorted(task.replies.values_list("pk", flat=True))
    Project.objects.filter(pk=project.pk).update(gold_rate=1.0)
    project.refresh_from_db()
    annotator = member()
    lease = leases.lease_next_task(project=project, annotator=annotator)
    submissions.submit_ranking(lease_id=lease.pk, annotator=annotator, idempotency_key="k",
                               ranking=[[ids[2]], [ids[1]], [ids[0]]])
    client.force_login(project.created_by)
    url = f"/projects/{project.pk}/gold/"
    page = client.get(f"{url}?task={task.pk}").content.decode()
    assert f'data-task="{task.pk}"' in page and "Make gold" in page
    no_inline_code(page)
    bad = client.post(url, {"task": task.pk, "action": "set", "ranking": "A > Q"})
    assert bad.status_code == 400 and b"Unknown reply letter(s): Q" in bad.content
    bad = client.post(url, {"task": task.pk, "action": "set", "ranking": "A > B"})
    assert bad.status_code == 400 and b"every reply" in bad.content
    assert not Task.objects.filter(pk=task.pk, state=Task.State.GOLD).exists()
    ok = client.post(url, {"task": task.pk, "action": "set", "ranking": "c > b = a", "note": HOSTILE})
    assert ok.status_code == 302
    reference = task.gold
    assert reference.ranking == [[ids[2]], [ids[0], ids[1]]] and Task.objects.get(pk=task.pk).state == "gold"
    assert GoldScore.objects.get(submission__annotator=annotator).ranking_tau > 0.8  # rescored at once
    listing = client.get(url).content.decode()
    assert f'data-gold="{task.pk}"' in listing
    detail = client.get(f"{url}?task={task.pk}").content.decode()
    assert "C &gt; A = B" in detail and "&lt;script&gt;" in detail and "<script>alert" not in detail
    assert client.post(url, {"task": task.pk, "action": "unset"}).status_code == 302
    assert Task.objects.get(pk=task.pk).state != "gold"
    reviewer = member(Role.REVIEWER)
    client.force_login(reviewer)
    assert client.get(url).status_code == 200
    assert client.post(url, {"task": task.pk, "action": "set", "ranking": "A > B > C"}).status_code == 403


def test_annotator_sees_paused_notice_redo_link_and_reason(client, project, member, annotator):
    TaskFactory(project=project)
    lease = leases.lease_next_task(project=project, annotator=annotator)
    sub = submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k",
                                           text="Paris is in Italy.")
    reviews.review_submission(submission_id=sub.pk, reviewer=member(Role.REVIEWER), decision="reject",
                              reason="Check the <b>country</b>.")
    client.force_login(annotator)
    home = client.get("/").content.decode()
    assert f'href="/projects/{project.pk}/label/{lease.pk}/"' in home and "Redo" in home
    page = client.get(f"/projects/{project.pk}/label/{lease.pk}/").content.decode()
    assert "returned this task to you to redo" in page and "Check the &lt;b&gt;country&lt;/b&gt;." in page
    assert "Paris is in Italy." in page
    # Paused with nothing open: the home page says so, and "start" answers with the reason
    submissions.submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k2", text="France.")
    rules.pause_annotator(project=project, user_id=annotator.pk, reason="quality", by=project.created_by)
    TaskFactory(project=project)
    home = client.get("/").content.decode()
    assert "Paused by the project's admins" in home and "Start labelling" not in home
    r = client.post(f"/projects/{project.pk}/start/", follow=True)
    assert b"below the quality bar" in r.content
