"""The prepared reads every API request makes (token -> user, membership -> project -> current
instructions) must give exactly what the ORM gives, and refuse exactly what DRF's own token
authentication refuses."""
import pytest
from django.db import connection
from django.forms.models import model_to_dict
from rest_framework.authtoken.models import Token

from annotations import selectors
from annotations.models import Membership, Role
from annotations.services import instructions

from ..factories import UserFactory

pytestmark = pytest.mark.django_db


def _orm_membership(project, user):
    return (Membership.objects.select_related("project", "project__current_instructions")
            .get(project=project, user=user))


def _fields(obj):
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_membership_matches_the_orm_field_for_field(project, annotator):
    assert connection.vendor == "postgresql"
    instructions.publish_instructions(project=project, published_by=project.created_by,
                                      body="Be **helpful**.\n\nÜnïcode ✓ and a\x7f odd char")
    project.refresh_from_db()
    got, want = selectors.membership(project_id=project.pk, user=annotator), _orm_membership(project, annotator)
    assert _fields(got) == _fields(want)
    assert _fields(got.project) == _fields(want.project)
    assert _fields(got.project.current_instructions) == _fields(want.project.current_instructions)
    # Objects behave like ORM-loaded ones: saved state, no extra query for the joined rows.
    assert not got._state.adding and got._state.db == "default"
    with pytest.raises(AssertionError):  # sanity: the comparison above can fail
        assert _fields(got.project) == {**_fields(want.project), "name": "other"}


def test_membership_without_instructions_and_for_outsiders(project, annotator):
    type(project).objects.filter(pk=project.pk).update(current_instructions=None)
    found = selectors.membership(project_id=project.pk, user=annotator)
    assert found.role == Role.ANNOTATOR and found.project.current_instructions is None
    assert selectors.membership(project_id=project.pk, user=UserFactory()) is None
    assert selectors.membership(project_id=project.pk + 1000, user=annotator) is None


def test_token_auth_answers_like_drf(api, project, annotator):
    from rest_framework.test import APIClient

    token = Token.objects.create(user=annotator)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    r = client.get(f"/api/projects/{project.pk}/")
    assert r.status_code == 200, r.content
    assert r.json()["id"] == project.pk

    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key[:-1]}x")
    r = client.get(f"/api/projects/{project.pk}/")
    assert r.status_code == 401 and r.json()["detail"] == "Invalid token."

    annotator.is_active = False
    annotator.save()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    r = client.get(f"/api/projects/{project.pk}/")
    assert r.status_code == 401 and r.json()["detail"] == "User inactive or deleted."


def test_token_auth_gives_request_user_and_auth(rf, annotator):
    from annotations.api.authentication import PreparedTokenAuthentication

    token = Token.objects.create(user=annotator)
    request = rf.get("/", HTTP_AUTHORIZATION=f"Token {token.key}")
    user, auth = PreparedTokenAuthentication().authenticate(request)
    assert user.pk == annotator.pk and model_to_dict(user) == model_to_dict(annotator)
    assert auth.key == token.key and auth.user_id == annotator.pk and auth.created == token.created
