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

from ..factories import ProjectFactory, TaskFactory, UserFactory

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


def test_replies_match_prefetch_and_need_no_more_queries(project, django_assert_num_queries):
    from django.db.models import Prefetch, prefetch_related_objects

    from annotations.models import CandidateReply, ModelVersion, Task

    from ..factories import ReplyFactory, comparison_task

    task = comparison_task(project, k=3)
    version = ModelVersion.objects.create(name="drafter-v1", base_model="/models/x")
    ReplyFactory(task=task, source=CandidateReply.Source.MODEL, model_version=version,
                 sampling_params={"temperature": 0.7, "seed": 3}, content="Model ✓ reply")
    want = Task.objects.get(pk=task.pk)
    prefetch_related_objects([want], Prefetch("replies", queryset=CandidateReply.objects.select_related(
        "model_version").order_by("id")))
    got = selectors.load_replies(Task.objects.get(pk=task.pk))
    with django_assert_num_queries(0):
        replies = list(got.replies.all())
        assert [_fields(r) for r in replies] == [_fields(r) for r in want.replies.all()]
        assert [r.model_version and _fields(r.model_version) for r in replies] == [
            r.model_version and _fields(r.model_version) for r in want.replies.all()]
        assert replies[-1].sampling_params == {"temperature": 0.7, "seed": 3}
        assert replies[0].task is got
    empty = selectors.load_replies(TaskFactory(project=project))
    with django_assert_num_queries(0):
        assert list(empty.replies.all()) == []


def test_lease_for_annotator_is_scoped(project, annotator, member):
    from annotations.services import leases

    TaskFactory(project=project)
    lease = leases.lease_next_task(project=project, annotator=annotator)
    found = selectors.lease_for_annotator(project=project, annotator=annotator, lease_id=lease.pk, with_task_kind=True)
    assert found.pk == lease.pk and found.task_kind == "demonstration" and found.expires_at == lease.expires_at
    assert selectors.lease_for_annotator(project=project, annotator=member(), lease_id=lease.pk) is None
    other = ProjectFactory()
    assert selectors.lease_for_annotator(project=other, annotator=annotator, lease_id=lease.pk) is None


@pytest.mark.django_db(transaction=True)
def test_a_dropped_connection_surfaces_as_djangos_error_and_is_replaced(project, annotator):
    """The API answers django.db's OperationalError/InterfaceError with 503; a raw psycopg error
    would be a 500, and a connection not flagged as failed would be kept (CONN_MAX_AGE) and fail
    every later request of that thread."""
    import psycopg
    from django.db import InterfaceError, OperationalError

    selectors.membership(project_id=project.pk, user=annotator)
    pid = connection.connection.info.backend_pid
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises((OperationalError, InterfaceError)) as raised:
        selectors.membership(project_id=project.pk, user=annotator)
    assert not isinstance(raised.value, psycopg.Error)
    assert connection.errors_occurred
    connection.close_if_unusable_or_obsolete()  # what Django does at the end of every request
    assert selectors.membership(project_id=project.pk, user=annotator).role == Role.ANNOTATOR


def _dsn() -> str:
    d = connection.settings_dict
    return f"host={d['HOST'] or '127.0.0.1'} port={d['PORT'] or 5432} user={d['USER']} dbname={d['NAME']}"
