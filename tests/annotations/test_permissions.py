"""Walk every API URL pattern that takes a project id, as an outsider, as a member of another
project, and as each role, and check the deny-by-default rules. New endpoints are covered
automatically: the walk reads the URLconf, and an endpoint whose ids it cannot fill fails here."""
import io

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

from annotations.api.views import ProjectScopedView
from annotations.models import Role
from annotations.services.leases import lease_next_task
from annotations.services.submissions import submit_demonstration
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "patch", "put", "delete")


@pytest.fixture
def world():
    """Project A with one object of every kind; project B with its own admin."""
    a = ProjectFactory()
    annotator = UserFactory()
    MembershipFactory(project=a, user=annotator, role=Role.ANNOTATOR)
    TaskFactory.create_batch(3, project=a)  # the third stays open for the role tests
    lease = lease_next_task(project=a, annotator=annotator)
    done = lease_next_task(project=a, annotator=annotator)
    submission = submit_demonstration(lease_id=done.pk, annotator=annotator, idempotency_key="k", text="x")
    from annotations.models import ImportBatch

    batch = ImportBatch.objects.create(project=a, file_name="f.jsonl", format="jsonl", created_by=a.created_by)
    from annotations.models import ModelVersion
    from models_service.models import ModelJob

    job = ModelJob.objects.create(project=a, kind="drafting", model_version=ModelVersion.objects.create(name="m"))
    from annotations.models import DatasetSnapshot
    from models_service.models import FinetuneJob

    snapshot = DatasetSnapshot.objects.create(project=a)
    finetune = FinetuneJob.objects.create(project=a, snapshot=snapshot, method="sft", base_model=job.model_version)
    b = ProjectFactory()
    ids = {"project_id": a.pk, "task_id": lease.task_id, "lease_id": lease.pk, "submission_id": submission.pk,
           "import_id": batch.pk, "number": 1, "user_id": annotator.pk, "job_id": job.pk,
           "snapshot_id": snapshot.pk, "finetune_id": finetune.pk}
    return {"a": a, "b": b, "ids": ids, "annotator": annotator}


def all_routes(resolver=None, prefix=""):
    """Every (route, callback) of the whole URLconf, includes flattened."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from all_routes(entry, prefix + str(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            yield prefix + str(entry.pattern), entry.callback


def project_routes():
    routes = []
    for route, callback in all_routes():
        view = getattr(callback, "view_class", None)
        if view is not None and issubclass(view, ProjectScopedView):
            routes.append((route, view))
    assert len(routes) > 20
    return routes


def fill(route: str, ids: dict) -> str:
    path = "/" + route
    for key, value in ids.items():
        path = path.replace(f"<int:{key}>", str(value))
    assert "<" not in path, f"test does not know how to fill {route}"
    return path


def call(client, method, path):
    return getattr(client, method)(path, {}, format="json")


def test_every_project_route_is_a_project_scoped_view():
    scoped = {route for route, _ in project_routes()}
    for route, _callback in all_routes():
        if "<int:project_id>" in route and route.startswith("api/"):
            assert route in scoped, f"{route} bypasses the project-scoped base class"


def test_outsiders_and_other_projects_members_get_404_everywhere(api, world):
    outsider = UserFactory()
    other_admin = world["b"].created_by
    for route, view in project_routes():
        path = fill(route, world["ids"])
        for method in METHODS:
            for user in (outsider, other_admin):
                response = call(api(user), method, path)
                assert response.status_code == 404, (route, method, user, response.status_code)


def test_anonymous_is_refused_everywhere(api, world):
    for route, _view in project_routes():
        path = fill(route, world["ids"])
        for method in METHODS:
            assert call(api(), method, path).status_code in (401, 403), (route, method)


def test_object_ids_of_project_a_are_not_found_through_project_b(api, world):
    """Member of B asks B's URLs for A's task / lease / submission / import ids."""
    b_admin = world["b"].created_by
    ids = {**world["ids"], "project_id": world["b"].pk}
    for route, view in project_routes():
        if not any(f"<int:{k}>" in route for k in ("task_id", "lease_id", "submission_id", "import_id", "user_id",
                                                   "job_id", "snapshot_id", "finetune_id")):
            continue
        path = fill(route, ids)
        for method in view.roles:
            response = call(api(b_admin), method, path)
            assert response.status_code in (403, 404), (route, method, response.status_code)
            assert response.status_code == 404 or Role.ADMIN not in view.roles[method], (route, method)


def test_each_role_gets_403_exactly_where_the_view_denies_it(api, world):
    a = world["a"]
    users = {role: UserFactory() for role in Role.values}
    for role, user in users.items():
        MembershipFactory(project=a, user=user, role=role)
    for route, view in project_routes():
        path = fill(route, world["ids"])
        for method in METHODS:
            allowed = view.roles.get(method, frozenset())
            for role, user in users.items():
                response = call(api(user), method, path)
                if role in allowed:
                    assert response.status_code not in (403, 405), (route, method, role, response.status_code)
                else:
                    assert response.status_code in (403, 405), (route, method, role, response.status_code)


@pytest.mark.parametrize(
    "role, method, route, expected",
    [
        (Role.ANNOTATOR, "post", "api/projects/<int:project_id>/instructions/", 403),
        (Role.ANNOTATOR, "post", "api/projects/<int:project_id>/imports/", 403),
        (Role.ANNOTATOR, "get", "api/projects/<int:project_id>/tasks/", 403),
        (Role.ANNOTATOR, "patch", "api/projects/<int:project_id>/", 403),
        (Role.ENGINEER, "post", "api/projects/<int:project_id>/next/", 403),
        (Role.REVIEWER, "post", "api/projects/<int:project_id>/members/", 403),
        (Role.ANNOTATOR, "post", "api/projects/<int:project_id>/model-jobs/", 403),
        (Role.ANNOTATOR, "get", "api/projects/<int:project_id>/submissions/<int:submission_id>/critiques/", 403),
        (Role.ANNOTATOR, "post", "api/projects/<int:project_id>/next/", 201),
    ],
)
def test_role_rules_that_matter(api, world, role, method, route, expected):
    user = UserFactory()
    MembershipFactory(project=world["a"], user=user, role=role)
    assert call(api(user), method, fill(route, world["ids"])).status_code == expected


def test_openapi_schema_generates_without_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())
