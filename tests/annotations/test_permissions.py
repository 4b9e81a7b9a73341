"""IDOR walk over the whole URLconf: every route, every HTTP method, API and pages alike.

Each route must be classified, or the walk fails:
- a project API view (a ``ProjectScopedView`` with ``roles`` per method),
- a project page (declared with ``frontend.access.project_page`` and its roles per method),
- the Django admin (staff only), or
- one of the few ``OPEN_ROUTES`` below, which take no ids and say why they are safe.

Then, with project A holding one object of every kind (a ready snapshot with a real file to
download included), an outsider, project B's admin (asking through A's URLs and through B's URLs
with A's object ids) and an anonymous visitor try every method on every route. They get 404 (or
403 / 405 where their role or the method is refused anyway), the very same answer as for ids that
do not exist, and never a byte of A's data. A's own members get past the id lookups (a positive
control: the ids are real), and each role gets 403 exactly where the declaration says so.

A route added later is covered without touching this file as long as it uses the base class or
the decorator and its ids are among ``ID_KEYS``; otherwise the walk fails and says what to add."""
from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from annotations.api.views import ProjectScopedView
from annotations.exports.service import build_snapshot, create_snapshot
from annotations.models import ImportBatch, ModelVersion, Role
from annotations.services.leases import lease_next_task
from annotations.services.submissions import submit_demonstration
from models_service.models import FinetuneJob, ModelJob
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory, comparison_task

pytestmark = pytest.mark.django_db

METHODS = ("get", "head", "options", "post", "put", "patch", "delete")
SECRET = "A-TEAM-SECRET-7f3a"
MISSING = 987654321  # an id that exists nowhere
# Routes that take no ids and are not under a project: why each one is safe to leave open.
OPEN_ROUTES = {
    "healthz": "liveness probe: answers 'ok', reads nothing",
    "api/auth/token/": "password -> token (throttled); DELETE revokes the caller's own token",
    "api/projects/": "lists only the caller's projects; creating needs staff",
    "api/schema/": "the OpenAPI document, behind login",
    "api/docs/": "Swagger UI from our static files, behind login",
    "": "home: the caller's own projects, behind login",
    "accounts/login/": "the login form (throttled)",
    "accounts/logout/": "ends the caller's own session",
    "api/feedback/reports/": "report ingestion: a project's report token only, the project comes from the token "
                             "(tests/annotations/feedback/test_reports_api.py)",
}
# URL parameter -> which object of project A fills it.
ID_KEYS = ("project_id", "task_id", "lease_id", "submission_id", "import_id", "number", "user_id", "job_id",
           "snapshot_id", "finetune_id", "report_id", "token_id", "eval_set_id", "eval_run_id", "battle_id",
           "rule_id", "notification_id", "finding_id")
# Parameters that are not global ids but numbers inside the project named in the URL (B has its own
# instructions v1), so asking B's URL for "number 1" is not a foreign object.
PROJECT_LOCAL = {"number"}


def all_routes(resolver=None, prefix=""):
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from all_routes(entry, prefix + str(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            yield prefix + str(entry.pattern), entry.callback


def classify(route, callback):
    """('api' | 'page', roles by method) for a project route, ('admin' | 'open', None) otherwise."""
    view = getattr(callback, "view_class", None)
    if view is not None and issubclass(view, ProjectScopedView):
        return "api", {**view.roles, **({"head": view.roles["get"]} if "get" in view.roles else {})}
    if hasattr(callback, "project_roles"):
        return "page", callback.project_roles
    if route.startswith("admin/"):
        return "admin", None
    if route in OPEN_ROUTES:
        return "open", None
    return None, None


def project_routes():
    routes = []
    for route, callback in all_routes():
        kind, roles = classify(route, callback)
        if kind in ("api", "page"):
            routes.append((route, kind, roles))
    return routes


def params(route):
    return re.findall(r"<(?:\w+:)?(\w+)>", route)


def fill(route, ids, query=True):
    path = "/" + route
    for name in params(route):
        path = re.sub(rf"<(?:\w+:)?{name}>", str(ids[name]), path)
    if query and route.endswith("download/"):
        path += "?file=sft.train.jsonl"  # a file the snapshot really has
    return path


def call(client, method, path):
    if method in ("get", "head", "options", "delete"):
        return getattr(client, method)(path)
    return getattr(client, method)(path, {}, format="json")


def as_user(user):
    client = APIClient()
    if user is not None:
        client.force_login(user)  # the session path: pages and API alike
    return client


def without_ids(ids, keep=()):
    return {k: (v if k in keep else MISSING) for k, v in ids.items()}


@pytest.fixture
def world(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    a = ProjectFactory(name=f"Project {SECRET}", instructions=f"# Rules {SECRET}")
    members = {Role.ADMIN: a.created_by}
    for role in (Role.REVIEWER, Role.ANNOTATOR, Role.ENGINEER):
        members[role] = UserFactory()
        MembershipFactory(project=a, user=members[role], role=role)
    annotator = members[Role.ANNOTATOR]
    for i in range(3):
        TaskFactory(project=a, conversation=[{"role": "user", "content": f"{SECRET} question {i}"}])
    # The open lease is a red-team one: its chat (API and page) answers, and the labelling page
    # redirects it there, so every lease route is walked with a real object.
    from annotations.feedback.redteam import create_brief

    create_brief(project=a, goal=f"{SECRET} make it misbehave", category="jailbreak")
    lease = lease_next_task(project=a, annotator=annotator, kinds=["red_team"])
    done = lease_next_task(project=a, annotator=annotator)
    submission = submit_demonstration(lease_id=done.pk, annotator=annotator, idempotency_key="k",
                                      text=f"{SECRET} answer")
    batch = ImportBatch.objects.create(project=a, file_name=f"{SECRET}.jsonl", format="jsonl", created_by=a.created_by)
    model = ModelVersion.objects.create(name=f"model-{SECRET}")
    job = ModelJob.objects.create(project=a, kind="drafting", model_version=model)
    snapshot = build_snapshot(snapshot_id=create_snapshot(project=a, name=SECRET, eval_fraction=0,
                                                          near_duplicates=False).pk)
    assert "sft.train.jsonl" in snapshot.files
    finetune = FinetuneJob.objects.create(project=a, snapshot=snapshot, method="sft", base_model=model)
    compared = comparison_task(a)  # ai-rankings answer for comparison tasks only
    from annotations.feedback.reports import clean_report, ingest_report
    from annotations.feedback.tokens import create_report_token

    issued = create_report_token(project=a, name=f"deployment {SECRET}", created_by=a.created_by)
    report = ingest_report(token=issued.token, report=clean_report({
        "conversation": [{"role": "user", "content": f"{SECRET} hi"}, {"role": "assistant", "content": "bad"}],
        "model_version": "m", "category": "other"})).report
    eval_set, run, battle = _arena(a, model, shown_to=[members[r] for r in (Role.ADMIN, Role.REVIEWER,
                                                                            Role.ANNOTATOR)])
    from annotations.quality.gold import set_gold
    from annotations.quality.models import Notification, QualityRule

    # The comparison task is also a gold task, so the gold routes find a real object too.
    set_gold(project=a, task_id=compared.pk, created_by=a.created_by,
             ranking=[list(compared.replies.values_list("pk", flat=True))], note=f"{SECRET} reference")

    rule = QualityRule.objects.create(project=a, metric="gold_accuracy", threshold=0.5)
    notification = Notification.objects.create(project=a, kind="rule_breached", subject=annotator,
                                               message=f"{SECRET} fell below the bar")
    from annotations.models import DataFinding, DataScan

    scan = DataScan.objects.create(project=a, import_batch=batch, status="done")
    finding = DataFinding.objects.create(scan=scan, project=a, kind="encoded_payload", title=f"{SECRET} payload",
                                         score=1, task_ids=[compared.pk], item_count=1,
                                         evidence={"examples": [{"task_id": compared.pk, "decoded": SECRET}]})
    b = ProjectFactory()
    ids = {"project_id": a.pk, "task_id": compared.pk, "lease_id": lease.pk, "submission_id": submission.pk,
           "import_id": batch.pk, "number": 1, "user_id": annotator.pk, "job_id": job.pk,
           "snapshot_id": snapshot.pk, "finetune_id": finetune.pk, "report_id": report.pk,
           "token_id": issued.token.pk, "eval_set_id": eval_set.pk, "eval_run_id": run.pk, "battle_id": battle.pk,
           "rule_id": rule.pk, "notification_id": notification.pk, "finding_id": finding.pk}
    return {"a": a, "b": b, "ids": ids, "members": members, "outsider": UserFactory()}


def _arena(project, model, shown_to):
    """An eval set, a finished run and one battle between two models, shown to ``shown_to`` (a
    battle page answers only the voters it was shown to)."""
    from django.utils import timezone

    from models_service.evaluation.models import Battle, BattleVote, EvalPrompt, EvalReply, EvalRun, EvalSet

    eval_set = EvalSet.objects.create(project=project, name=SECRET, status="ready")
    prompt = EvalPrompt.objects.create(eval_set=eval_set, conversation=[{"role": "user", "content": f"{SECRET} q"}],
                                       prompt_key="k", source="project")
    run = EvalRun.objects.create(project=project, eval_set=eval_set, status="done")
    other = ModelVersion.objects.create(name=f"other-{SECRET}")
    run.model_versions.set([model, other])
    left, right = (EvalReply.objects.create(run=run, prompt=prompt, model_version=m, content=f"{SECRET} reply")
                   for m in (model, other))
    battle = Battle.objects.create(run=run, prompt=prompt, left=left, right=right, pair_key=f"{model.pk}:{other.pk}")
    for user in shown_to:
        BattleVote.objects.create(battle=battle, voter=user, shown_at=timezone.now())
    return eval_set, run, battle


def assert_no_leak(response, *context):
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert SECRET.encode() not in body, context


def test_every_route_is_classified_and_every_id_is_known():
    unclassified, unknown = [], []
    for route, callback in all_routes():
        kind, _roles = classify(route, callback)
        if kind is None:
            unclassified.append(route)
        elif kind in ("api", "page"):
            assert params(route)[0] == "project_id", route
            unknown += [(route, p) for p in params(route) if p not in ID_KEYS]
        elif kind == "open":
            assert not params(route), f"{route} takes ids but is listed as open"
    assert not unclassified, (
        f"routes that are neither ProjectScopedView, @project_page, admin nor OPEN_ROUTES: {unclassified}")
    assert not unknown, f"add these URL parameters to ID_KEYS and the world fixture: {unknown}"
    kinds = [classify(r, c)[0] for r, c in all_routes()]
    assert kinds.count("api") > 30 and kinds.count("page") >= 10


def test_outsiders_get_the_answer_of_a_missing_project_on_every_route_and_method(world):
    """A stranger and B's admin, on A's URLs: the same status as for a project that does not
    exist (404, or 405 for a method a page never answers), and none of A's data."""
    for user in (world["outsider"], world["b"].created_by):
        client = as_user(user)
        for route, kind, roles in project_routes():
            for method in METHODS:
                response = call(client, method, fill(route, world["ids"]))
                # A project that does not exist answers 404 to anyone; 405 comes before any lookup.
                assert response.status_code == 404 or (kind == "page" and response.status_code == 405
                                                       and method not in roles), (route, method, response.status_code)
                assert_no_leak(response, route, method)


def test_another_projects_object_ids_through_my_own_project_are_not_found(world):
    """B's admin asks B's URLs for A's task, lease, submission, import, job, snapshot, finetune and
    member ids: 404 wherever an admin may use the method (403 / 405 where nobody of that role may),
    identical to ids that exist nowhere."""
    b = world["b"]
    client = as_user(b.created_by)
    foreign = {**world["ids"], "project_id": b.pk}
    missing = {**without_ids(world["ids"], keep=PROJECT_LOCAL), "project_id": b.pk}
    walked = 0
    for route, kind, roles in project_routes():
        if not set(params(route)) - {"project_id"} - PROJECT_LOCAL:
            continue
        for method in METHODS:
            response = call(client, method, fill(route, foreign))
            baseline = call(client, method, fill(route, missing))
            assert response.status_code == baseline.status_code, (route, method, response.status_code,
                                                                  baseline.status_code)
            if Role.ADMIN in roles.get(method, ()):
                assert response.status_code == 404, (route, method, response.status_code)
            else:
                assert response.status_code in (403, 405), (route, method, response.status_code)
            assert_no_leak(response, route, method)
            walked += 1
    assert walked > 100


def test_anonymous_visitors_are_refused_on_every_route_and_method(world):
    client = as_user(None)
    for route, kind, _roles in project_routes():
        for method in METHODS:
            response = call(client, method, fill(route, world["ids"]))
            if kind == "api":
                assert response.status_code in (401, 403), (route, method, response.status_code)
            else:
                assert response.status_code == 302 and response.url.startswith("/accounts/login/"), (route, method)
            assert_no_leak(response, route, method)


def test_members_get_past_the_id_lookups_and_each_role_gets_403_exactly_where_declared(world):
    """Positive control (A's members reading A's objects are found, so the 404s above are not
    vacuous) and the role matrix for every method of every route, pages included."""
    members = world["members"]
    clients = {role: as_user(user) for role, user in members.items()}
    for route, kind, roles in project_routes():
        path = fill(route, world["ids"])
        # The lease and its pages belong to the annotator who holds it; nobody else's lookup finds it.
        owner_only = "lease_id" in params(route)
        for method in ("get", "options"):  # reading methods, so the world stays as it is (HEAD runs GET)
            for role, client in clients.items():
                response = call(client, method, path)
                assert response.status_code < 500, (route, method, role, response.status_code)
                if role in roles.get(method, ()):
                    if owner_only and role != Role.ANNOTATOR:
                        assert response.status_code == 404, (route, method, role)
                    else:
                        assert response.status_code in (200, 204, 302), (route, method, role, response.status_code)
                else:
                    assert response.status_code in (403, 405), (route, method, role, response.status_code)
        for method in ("post", "put", "patch", "delete"):
            for role, client in clients.items():
                if role in roles.get(method, ()):
                    continue  # writing with an empty body is the schema fuzz test's business
                response = call(client, method, path)
                assert response.status_code in (403, 405), (route, method, role, response.status_code)


HOSTILE_QUERIES = ({"ordering": "created_by__password"}, {"ordering": "-annotator__password"},
                   {"created_by__password__startswith": "md5"}, {"project__memberships__user__password__gt": ""},
                   # PostgreSQL text cannot hold NUL: a filter value with one was a 500 (now a 400 at the door)
                   {"kind": "x\x00"}, {"state": "\x00"}, {"status": "a\x00b"}, {"action": "\x00"}, {"q\x00": "1"})


def test_lookups_through_relations_in_query_parameters_are_refused_everywhere(world):
    """Every API route a member may read answers 400 to a filter or ordering through a relation
    (``created_by__password``), whatever the view does with its own parameters; pages ignore
    unknown parameters. A NUL character in any parameter is a 400 everywhere. No password hash
    ever shows up."""
    members = world["members"]
    hashes = [u.password for u in members.values()]
    for route, kind, roles in project_routes():
        readers = [r for r in (Role.ADMIN, Role.REVIEWER, Role.ENGINEER, Role.ANNOTATOR) if r in roles.get("get", ())]
        if not readers:
            continue
        reader = Role.ANNOTATOR if "lease_id" in params(route) else readers[0]
        client = as_user(members[reader])
        path = fill(route, world["ids"], query=False)
        for query in HOSTILE_QUERIES:
            response = client.get(path, query)
            body = response.content.decode(errors="replace") if not response.streaming else ""
            assert not any(h in body for h in hashes), (route, query)
            has_nul = any("\x00" in k + v for k, v in query.items())
            if kind == "api" or has_nul:
                assert response.status_code == 400, (route, query, response.status_code)
            else:
                assert response.status_code in (200, 302), (route, query, response.status_code)


def test_the_django_admin_is_for_staff_only(world):
    """Every admin page of every registered model, with A's objects, sends a non-staff member
    (A's own admin included) to the admin login."""
    a_admin = as_user(world["members"][Role.ADMIN])
    outsider = as_user(world["outsider"])
    checked = 0
    for model in admin.site._registry:
        meta = model._meta
        row = model.objects.first()
        names = [("changelist", []), ("add", [])]
        if row is not None:
            names += [("change", [row.pk]), ("delete", [row.pk]), ("history", [row.pk])]
        for name, args in names:
            path = reverse(f"admin:{meta.app_label}_{meta.model_name}_{name}", args=args)
            for client in (a_admin, outsider):
                for method in ("get", "post"):
                    response = getattr(client, method)(path)
                    assert response.status_code == 302 and response.url.startswith("/admin/login/"), (path, method)
                    checked += 1
    assert checked > 100


def test_uploaded_files_and_snapshot_folders_are_not_served(world, client):
    """Imports and snapshots live on disk under MEDIA_ROOT and EXPORT_SNAPSHOT_ROOT; no URL maps
    onto those folders, so the only way to a file is the checked download endpoint."""
    client.force_login(world["members"][Role.ADMIN])
    for path in ("/media/imports/x.jsonl", "/media/", "/snapshots/", "/var/media/imports/"):
        assert client.get(path).status_code == 404, path


def test_ids_in_request_bodies_are_looked_up_inside_the_project(world, client):
    """Object ids also travel in bodies (a snapshot to train on, tasks to compare, drafts used, the
    submission a review form decides): B's admin naming A's objects gets a refusal and A is untouched."""
    a, b, ids = world["a"], world["b"], world["ids"]
    b_admin = as_user(b.created_by)
    base = f"/api/projects/{b.pk}/"
    response = b_admin.post(base + "finetunes/", {"snapshot": ids["snapshot_id"], "method": "sft",
                                                  "base_model": f"model-{SECRET}"}, format="json")
    assert response.status_code == 400 and "snapshot" in response.json()
    assert not FinetuneJob.objects.filter(project=b).exists()
    tasks_before = a.tasks.count()
    response = b_admin.post(base + "comparisons/build/", {"task_ids": list(a.tasks.values_list("pk", flat=True))},
                            format="json")
    assert response.status_code == 200 and response.json() == {"created": 0} and a.tasks.count() == tasks_before

    a_reply = a.submissions.get(pk=ids["submission_id"]).reply
    TaskFactory(project=b)
    lease = b_admin.post(base + "next/").json()
    response = b_admin.post(f"{base}leases/{lease['id']}/submit/",
                            {"idempotency_key": "x", "text": "mine", "draft_ids": [a_reply.pk]}, format="json")
    assert response.status_code == 400 and "draft" in response.json()["detail"]

    client.force_login(b.created_by)
    response = client.post(f"/projects/{b.pk}/review/", {"submission": ids["submission_id"], "decision": "accept"},
                           follow=True)
    assert b"No such submission in this project" in response.content
    assert a.submissions.get(pk=ids["submission_id"]).status == "submitted"
    assert_no_leak(response)


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
    """The rules people ask about, spelled out (the walk above checks them all)."""
    user = UserFactory()
    MembershipFactory(project=world["a"], user=user, role=role)
    assert call(api(user), method, fill(route, world["ids"])).status_code == expected


def test_openapi_schema_generates_without_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())
