import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from annotations.errors import InvalidInput
from annotations.models import InstructionVersion
from annotations.services.instructions import publish_instructions

pytestmark = pytest.mark.django_db


def test_publishing_adds_a_version_and_never_edits_old_ones(project, admin_user):
    v1 = project.current_instructions
    v2 = publish_instructions(project=project, body="# Second\r\nbody", title="clarify ties", published_by=admin_user)
    project.refresh_from_db()
    assert (v1.number, v2.number) == (1, 2) and project.current_instructions == v2
    assert v2.body == "# Second\nbody" and len(v2.body_sha256) == 64
    assert InstructionVersion.objects.get(pk=v1.pk).body == v1.body


def test_a_published_version_cannot_be_saved_again(project):
    version = project.current_instructions
    version.body = "tampered"
    with pytest.raises(ValidationError):
        version.save()


def test_database_trigger_refuses_raw_updates(project):
    assert connection.vendor == "postgresql"
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        InstructionVersion.objects.filter(pk=project.current_instructions_id).update(body="tampered")


def test_empty_instructions_are_refused(project, admin_user):
    with pytest.raises(InvalidInput):
        publish_instructions(project=project, body="   \n", published_by=admin_user)
