"""The report endpoint end to end, as a deployed application calls it: token authentication (good,
wrong, revoked, another project's, a user's), strict validation with clear errors, dedupe,
batches that keep their good reports, body size and rate limits; and the token admin API."""
from __future__ import annotations

import threading

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.authtoken.models import Token

from annotations.feedback.models import MisbehaviourReport, ReportToken
from annotations.models import ModelVersion, Role
from tests.factories import ProjectFactory

from .helpers import REPORT_URL, conversation, post_report, report_body, reporter, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle history lives in the shared cache: start every test with none.
    cache.clear()
    yield
    cache.clear()


# --- tokens ---------------------------------------------------------------------------------------
def test_admin_creates_a_token_that_is_shown_once_and_stored_hashed(api, project, admin_user):
    response = api(admin_user).post(f"/api/projects/{project.pk}/report-tokens/", {"name": "support-bot"},
                                    format="json")
    assert response.status_code == 201, response.json()
    secret = response.json()["token"]
    assert secret.startswith("lwr_") and len(secret) > 40 and response.json()["prefix"] == secret[:12]
    listed = api(admin_user).get(f"/api/projects/{project.pk}/report-tokens/").json()
    assert [t["name"] for t in listed] == ["support-bot"] and "token" not in listed[0]
    stored = ReportToken.objects.get()
    assert secret not in {str(v) for v in stored.__dict__.values()}  # only the hash is kept
    assert post_report(reporter(secret), report_body()).status_code == 201


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ANNOTATOR, Role.ENGINEER])
def test_only_admins_manage_tokens(api, project, member, role):
    client = api(member(role))
    assert client.post(f"/api/projects/{project.pk}/report-tokens/", {"name": "x"}, format="json").status_code == 403
    assert client.get(f"/api/projects/{project.pk}/report-tokens/").status_code == 403


def test_token_name_is_required(api, project, admin_user):
    response = api(admin_user).post(f"/api/projects/{project.pk}/report-tokens/", {"name": ""}, format="json")
    assert response.status_code == 400 and "name" in response.json()


# --- authentication -------------------------------------------------------------------------------
def test_a_valid_token_files_the_report_in_its_project(project):
    token, secret = token_for(project)
    mv = ModelVersion.objects.create(name="smollm2-135m-instruct")
    response = post_report(reporter(secret), report_body(metadata={"request_id": "r-1"}))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["result"] == "created" and body["times_reported"] == 1 and body["report_status"] == "new"
    report = MisbehaviourReport.objects.get(pk=body["id"])
    assert report.project == project and report.token == token and report.source == "deployment"
    assert report.conversation == conversation() and report.bad_turn == 1  # the last assistant reply
    assert report.model_version == mv and report.category == "harmful_content"
    assert report.metadata == {"request_id": "r-1"}
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize("header", [
    None,                                    # nothing
    "Bearer lwr_00000000_" + "x" * 43,        # well formed, unknown
    "Bearer nonsense",
    "Bearer",                                # no token
    "Basic dXNlcjpwYXNz",                    # another scheme
    "Bearer lwr_a lwr_b",                    # two tokens
])
def test_missing_or_wrong_tokens_are_refused(project, header):
    token_for(project)
    client = reporter(None)
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = post_report(client, report_body())
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert MisbehaviourReport.objects.count() == 0


def test_a_revoked_token_is_refused_at_once(api, project, admin_user):
    token, secret = token_for(project)
    assert post_report(reporter(secret), report_body()).status_code == 201
    response = api(admin_user).post(f"/api/projects/{project.pk}/report-tokens/{token.pk}/revoke/")
    assert response.status_code == 200 and response.json()["active"] is False
    assert post_report(reporter(secret), report_body(category="other", bad_turn=1,
                                                     model_version="other")).status_code == 401
    assert MisbehaviourReport.objects.count() == 1
    # Revoking again changes nothing; another project's admin cannot even see it.
    assert api(admin_user).post(f"/api/projects/{project.pk}/report-tokens/{token.pk}/revoke/").status_code == 200
    other = ProjectFactory()
    assert api(other.created_by).post(f"/api/projects/{other.pk}/report-tokens/{token.pk}/revoke/").status_code == 404


def test_another_projects_token_reports_to_that_project_only(api, project, admin_user):
    other = ProjectFactory()
    _, other_secret = token_for(other)
    response = post_report(reporter(other_secret), report_body())
    assert response.status_code == 201
    report = MisbehaviourReport.objects.get(pk=response.json()["id"])
    assert report.project == other
    # Nothing in this project's queue, and the other project's report id is not found from here.
    assert api(admin_user).get(f"/api/projects/{project.pk}/reports/").json()["results"] == []
    assert api(admin_user).get(f"/api/projects/{project.pk}/reports/{report.pk}/").status_code == 404


def test_user_credentials_are_not_accepted_for_reporting(client, project, admin_user):
    user_key = Token.objects.create(user=admin_user).key
    for scheme in ("Token", "Bearer"):
        assert post_report(reporter(user_key, scheme), report_body()).status_code == 401
    # A logged-in browser session is not a report credential either.
    client.force_login(admin_user)
    response = client.post(REPORT_URL, report_body(), content_type="application/json")
    assert response.status_code == 401
    assert MisbehaviourReport.objects.count() == 0


def test_a_report_token_opens_nothing_else(project):
    _, secret = token_for(project)
    for scheme in ("Bearer", "Token"):
        client = reporter(secret, scheme)
        for url in ("/api/projects/", f"/api/projects/{project.pk}/", f"/api/projects/{project.pk}/reports/",
                    f"/api/projects/{project.pk}/report-tokens/", f"/api/projects/{project.pk}/tasks/"):
            assert client.get(url).status_code in (401, 403), (scheme, url)
        assert client.post(f"/api/projects/{project.pk}/report-tokens/", {"name": "more"},
                           format="json").status_code in (401, 403)
    assert ReportToken.objects.count() == 1


# --- validation -----------------------------------------------------------------------------------
BAD = [
    ("not an object", ["a", "list"], "non_field_errors"),
    ("no conversation", {k: v for k, v in report_body().items() if k != "conversation"}, "conversation"),
    ("empty conversation", report_body(conversation=[]), "conversation"),
    ("unknown role", report_body(conversation=[{"role": "tool", "content": "x"},
                                               {"role": "assistant", "content": "y"}]), "conversation"),
    ("system in the middle", report_body(conversation=[{"role": "user", "content": "x"},
                                                       {"role": "system", "content": "y"},
                                                       {"role": "assistant", "content": "z"}]), "conversation"),
    ("extra key in a message", report_body(conversation=[{"role": "user", "content": "x", "name": "n"},
                                                         {"role": "assistant", "content": "y"}]), "conversation"),
    ("empty content", report_body(conversation=[{"role": "user", "content": "  "},
                                                {"role": "assistant", "content": "y"}]), "conversation"),
    ("content not text", report_body(conversation=[{"role": "user", "content": 5},
                                                   {"role": "assistant", "content": "y"}]), "conversation"),
    ("NUL in content", report_body(conversation=conversation(reply="a\x00b")), "conversation"),
    ("no assistant reply", report_body(conversation=[{"role": "user", "content": "x"}]), "conversation"),
    ("bad_turn on a user message", report_body(bad_turn=0), "bad_turn"),
    ("bad_turn out of range", report_body(bad_turn=7), "bad_turn"),
    ("bad_turn not an integer", report_body(bad_turn="1"), "bad_turn"),
    ("bad_turn a boolean", report_body(bad_turn=True), "bad_turn"),
    ("bad reply with no prompt", report_body(conversation=[{"role": "system", "content": "s"},
                                                           {"role": "assistant", "content": "y"}]), "bad_turn"),
    ("no model_version", {k: v for k, v in report_body().items() if k != "model_version"}, "model_version"),
    ("model_version too long", report_body(model_version="m" * 201), "model_version"),
    ("unknown category", report_body(category="rude"), "category"),
    ("description not text", report_body(description=["x"]), "description"),
    ("description too long", report_body(description="d" * 5001), "description"),
    ("metadata a list", report_body(metadata=[1]), "metadata"),
    ("metadata too large", report_body(metadata={"blob": "x" * 5000}), "metadata"),
    ("unknown field", report_body(severity="high"), "non_field_errors"),
]


@pytest.mark.parametrize("name, body, field", BAD, ids=[b[0] for b in BAD])
def test_bad_reports_get_a_clear_400_and_nothing_is_stored(project, name, body, field):
    _, secret = token_for(project)
    response = post_report(reporter(secret), body)
    assert response.status_code == 400, (name, response.content)
    errors = response.json()
    assert errors["error"] == "invalid" and field in errors, errors
    assert isinstance(errors[field], list) and errors[field][0], errors
    assert MisbehaviourReport.objects.count() == 0


def test_size_limits_come_from_settings(project, settings):
    settings.FEEDBACK_MAX_TURNS = 4
    settings.FEEDBACK_MAX_MESSAGE_CHARS = 50
    settings.FEEDBACK_MAX_CONVERSATION_CHARS = 80
    _, secret = token_for(project)
    client = reporter(secret)
    long_turns = conversation() * 3  # 6 messages
    assert "more than 4 messages" in post_report(client, report_body(conversation=long_turns)).json()[
        "conversation"][0]
    big = conversation(reply="x" * 51)
    assert "longer than 50" in post_report(client, report_body(conversation=big)).json()["conversation"][0]
    total = conversation(prompt="p" * 45, reply="r" * 45)
    assert "the limit is 80" in post_report(client, report_body(conversation=total)).json()["conversation"][0]
    assert post_report(client, report_body(conversation=conversation(prompt="hi", reply="ok"))).status_code == 201


def test_a_body_over_the_limit_is_refused_before_parsing(project, settings):
    settings.FEEDBACK_MAX_BODY_BYTES = 1000
    _, secret = token_for(project)
    response = post_report(reporter(secret), report_body(description="d" * 2000))
    assert response.status_code == 413 and "limit is 1000" in response.json()["detail"]


def test_malformed_json_is_a_400(project):
    _, secret = token_for(project)
    response = reporter(secret).post(REPORT_URL, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_hostile_text_is_stored_verbatim(project):
    from tests.frontend.conftest import attack_texts

    _, secret = token_for(project)
    attacks = attack_texts(max_chars=30_000)
    turns = []
    for text in attacks[:40]:
        turns += [{"role": "user", "content": text}, {"role": "assistant", "content": text}]
    response = post_report(reporter(secret), report_body(conversation=turns[:100], description=attacks[0]))
    assert response.status_code == 201, response.json()
    stored = MisbehaviourReport.objects.get()
    assert stored.conversation == turns[:100] and stored.description == attacks[0]


# --- dedupe ---------------------------------------------------------------------------------------
def test_the_same_report_again_is_counted_not_stored_twice(project):
    _, secret = token_for(project)
    client = reporter(secret)
    first = post_report(client, report_body())
    again = post_report(client, report_body(description="Someone else saw it too.", metadata={"user": "b"}))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"result": "deduplicated", "id": first.json()["id"], "times_reported": 2,
                            "report_status": "new"}
    assert MisbehaviourReport.objects.count() == 1
    # A different bad reply, model or conversation is a different report.
    other_turn = report_body(conversation=conversation() + conversation(prompt="And a car?", reply="Sure..."))
    assert post_report(client, other_turn).status_code == 201
    assert post_report(client, report_body(model_version="v2")).status_code == 201
    assert MisbehaviourReport.objects.count() == 3


def test_identical_reports_from_two_projects_are_kept_apart(project):
    _, a = token_for(project)
    _, b = token_for(ProjectFactory())
    assert post_report(reporter(a), report_body()).status_code == 201
    assert post_report(reporter(b), report_body()).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_reports_make_one_row_and_count_every_one(project):
    _, secret = token_for(project)
    codes, barrier = [], threading.Barrier(6)

    def send():
        try:
            barrier.wait()
            codes.append(post_report(reporter(secret), report_body()).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] * 5 + [201]
    report = MisbehaviourReport.objects.get()
    assert report.times_reported == 6


# --- batches --------------------------------------------------------------------------------------
def test_a_batch_keeps_its_good_reports_and_explains_the_bad_ones(project):
    _, secret = token_for(project)
    client = reporter(secret)
    good = report_body()
    response = post_report(client, {"reports": [good, report_body(category="nope"), good,
                                                report_body(conversation=conversation(prompt="Other?"))]})
    assert response.status_code == 207, response.json()
    body = response.json()
    assert [r["result"] for r in body["results"]] == ["created", "invalid", "deduplicated", "created"]
    assert body["results"][1]["errors"] == {"category": [body["results"][1]["errors"]["category"][0]]}
    assert (body["created"], body["deduplicated"], body["invalid"]) == (2, 1, 1)
    assert MisbehaviourReport.objects.count() == 2


def test_batch_status_codes(project, settings):
    _, secret = token_for(project)
    client = reporter(secret)
    assert post_report(client, {"reports": [report_body()]}).status_code == 201
    assert post_report(client, {"reports": [report_body()]}).status_code == 200  # all deduplicated
    all_bad = post_report(client, {"reports": [report_body(category="x"), "nope"]})
    assert all_bad.status_code == 400 and all_bad.json()["invalid"] == 2
    assert post_report(client, {"reports": []}).status_code == 400
    settings.FEEDBACK_MAX_REPORTS_PER_REQUEST = 2
    too_many = post_report(client, {"reports": [report_body()] * 3})
    assert too_many.status_code == 400 and "At most 2" in too_many.json()["reports"][0]
    assert MisbehaviourReport.objects.count() == 1


# --- rate limits ----------------------------------------------------------------------------------
def test_reports_are_rate_limited_per_token(project, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "reports": "3/min"}}
    _, a = token_for(project, "a")
    _, b = token_for(project, "b")
    codes = [post_report(reporter(a), report_body(model_version=f"m{i}")).status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    # Another token (another deployment) has its own allowance.
    assert post_report(reporter(b), report_body(model_version="m9")).status_code == 201
    assert MisbehaviourReport.objects.count() == 4


def test_guessing_tokens_is_rate_limited_per_address(project, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "reports-address": "4/min"}}
    codes = [post_report(reporter(f"lwr_guess{i}"), report_body()).status_code for i in range(6)]
    assert codes == [401, 401, 401, 401, 429, 429]
    # The limit is per address: another client is not affected.
    _, secret = token_for(project)
    assert post_report(reporter(secret), report_body(), REMOTE_ADDR="10.0.0.9").status_code == 201


def test_report_token_command_prints_a_working_token_and_revokes_it(project):
    import io

    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    call_command("report_token", "--project", str(project.pk), "--name", "flywheel", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    assert secret.startswith("lwr_") and "shown once" in err.getvalue()
    assert post_report(reporter(secret), report_body()).status_code == 201
    token = ReportToken.objects.get()
    call_command("report_token", "--project", str(project.pk), "--revoke", str(token.pk), stdout=io.StringIO())
    assert post_report(reporter(secret), report_body(model_version="x")).status_code == 401


def test_issuing_and_revoking_report_tokens_is_audited(api, project, admin_user):
    from annotations.models import AuditEntry

    token = api(admin_user).post(f"/api/projects/{project.pk}/report-tokens/", {"name": "bot"}, format="json").json()
    api(admin_user).post(f"/api/projects/{project.pk}/report-tokens/{token['id']}/revoke/")
    entries = list(AuditEntry.objects.filter(project_id=project.pk, action__startswith="report_token")
                   .order_by("id").values_list("action", "actor_name", "target"))
    assert entries == [("report_token.created", admin_user.username, f"report token {token['id']} ({token['prefix']}…)"),
                       ("report_token.revoked", admin_user.username, f"report token {token['id']} ({token['prefix']}…)")]
    assert token["token"] not in str(AuditEntry.objects.values_list("details", flat=True))
