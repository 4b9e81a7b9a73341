"""The Django admin opens every registered model: list, add form, and change page of a real row."""
import pytest
from django.contrib import admin
from django.urls import reverse

from annotations.services.leases import lease_next_task
from annotations.services.submissions import submit_demonstration
from tests.factories import MembershipFactory, ReplyFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_every_admin_page_opens(client, project):
    staff = UserFactory(is_staff=True, is_superuser=True)
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator)
    task = TaskFactory(project=project)
    ReplyFactory(task=task)
    lease = lease_next_task(project=project, annotator=annotator)
    submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k", text="x")
    client.force_login(staff)
    checked = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        assert client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")).status_code == 200, meta
        if model_admin.has_add_permission(type("R", (), {"user": staff})()):
            assert client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add")).status_code == 200, meta
        row = model.objects.first()
        if row is not None:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
            assert client.get(url).status_code == 200, meta
            checked += 1
    assert checked >= 8


def test_publishing_through_the_admin_goes_through_the_service(client, project):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    response = client.post(reverse("admin:annotations_instructionversion_add"),
                           {"project": project.pk, "title": "from admin", "body": "# New rules"})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.current_instructions.number == 2 and project.current_instructions.body == "# New rules"


def test_quality_admin_pages_open_on_real_rows(client, project):
    """Gold references, their scores, rules and notifications: the change pages of real rows."""
    from annotations.quality import gold, rules
    from annotations.quality.models import GoldScore, GoldStandard, Notification, QualityRule

    staff = UserFactory(is_staff=True, is_superuser=True)
    annotator = UserFactory()
    MembershipFactory(project=project, user=annotator)
    task = TaskFactory(project=project)
    lease = lease_next_task(project=project, annotator=annotator)
    submit_demonstration(lease_id=lease.pk, annotator=annotator, idempotency_key="k", text="x")
    gold.set_gold(project=project, task_id=task.pk, created_by=project.created_by, text="the reference")
    rules.create_rule(project=project, created_by=project.created_by, metric="gold_accuracy", threshold=0.5)
    rules.pause_annotator(project=project, user_id=annotator.pk, reason="check", by=project.created_by)
    client.force_login(staff)
    for model in (GoldStandard, GoldScore, QualityRule, Notification):
        row = model.objects.get()
        meta = model._meta
        response = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk]))
        assert response.status_code == 200, meta
