"""Review and gold flows end to end through the HTTP API, as each role would use them."""
import pytest

from annotations.models import Project, Role, Task
from tests.factories import TaskFactory, comparison_task

pytestmark = pytest.mark.django_db


def keys(value):
    """The shape of a JSON answer: keys all the way down (values differ from task to task)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return type(value).__name__


def test_gold_flow_served_blind_scored_rule_pauses_admin_told_resume(api, project, member):
    admin = api(project.created_by)
    first, second = member(), member()
    normal, golden = comparison_task(project), comparison_task(project)
    TaskFactory(project=project, kind="comparison")  # spare normal task for after the resume
    a, b, c = sorted(golden.replies.values_list("pk", flat=True))
    base = f"/api/projects/{project.pk}"

    bad = admin.post(f"{base}/gold/", {"task": golden.pk, "ranking": [[a], [b]]}, format="json")
    assert bad.status_code == 400 and "every reply" in bad.json()["detail"]
    r = admin.post(f"{base}/gold/", {"task": golden.pk, "ranking": [[a], [b], [c]], "flags": {},
                                     "note": "a is the only correct answer"}, format="json")
    assert r.status_code == 201 and r.json()["ranking"] == [[a], [b], [c]] and r.json()["scored"] == 0
    assert admin.patch(f"{base}/", {"gold_rate": 1.0}, format="json").json()["gold_rate"] == 1.0
    r = admin.post(f"{base}/quality/rules/", {"metric": "gold_accuracy", "threshold": 0.6, "min_samples": 1,
                                              "window": 5}, format="json")
    assert r.status_code == 201 and r.json()["action"] == "pause"

    # Annotators cannot tell gold from normal: same answer shape, no quality settings on the project
    as_first = api(first)
    assert "gold_rate" not in as_first.get(f"{base}/").json() and "review_rate" not in as_first.get(f"{base}/").json()
    gold_lease = as_first.post(f"{base}/next/").json()
    assert gold_lease["task"]["id"] == golden.pk
    Project.objects.filter(pk=project.pk).update(gold_rate=0.0)
    normal_lease = api(second).post(f"{base}/next/").json()
    assert normal_lease["task"]["id"] == normal.pk
    assert keys(gold_lease) == keys(normal_lease)
    assert as_first.get(f"{base}/gold/").status_code == 403
    assert as_first.get(f"{base}/quality/annotators/").status_code == 403

    # A reversed ranking of the gold task, flags right: accuracy (0 + 1) / 2 < 0.6 -> paused; the admin is told
    r = as_first.post(f"{base}/leases/{gold_lease['id']}/submit/",
                      {"idempotency_key": "g1", "ranking": [[c], [b], [a]]}, format="json")
    normal_ids = sorted(Task.objects.get(pk=normal.pk).replies.values_list("pk", flat=True))
    n = api(second).post(f"{base}/leases/{normal_lease['id']}/submit/",
                         {"idempotency_key": "n1", "ranking": [[x] for x in normal_ids]}, format="json")
    assert r.status_code == n.status_code == 201 and keys(r.json()) == keys(n.json())
    assert r.json()["status"] == n.json()["status"] == "submitted"
    refused = as_first.post(f"{base}/next/")
    assert refused.status_code == 403 and refused.json()["error"] == "annotator_paused"
    assert "below the quality bar" in refused.json()["detail"]
    notes = admin.get(f"{base}/notifications/?unread=true").json()
    assert [n["kind"] for n in notes] == ["annotator_paused"] and notes[0]["subject"] == first.username
    assert "gold accuracy 0.50" in notes[0]["message"]
    rows = {row["username"]: row for row in admin.get(f"{base}/quality/annotators/").json()}
    assert rows[first.username]["gold"] == {"items": 1, "accuracy": 0.5, "ranking_tau": -1.0, "flags_exact": 1.0,
                                            "ratings_exact": None, "text_similarity": None}
    assert rows[first.username]["paused_at"] is not None and rows[second.username]["gold"]["items"] == 0
    detail = admin.get(f"{base}/quality/annotators/{first.pk}/").json()
    assert detail["gold_history"][0]["task"] == golden.pk and detail["gold_history"][0]["ranking_tau"] == -1.0
    assert admin.get(f"{base}/gold/{golden.pk}/").json()["scored"] == 1

    # Resumed by the admin: served again, the notification is marked read
    assert admin.post(f"{base}/quality/annotators/{first.pk}/resume/").json()["paused_at"] is None
    assert as_first.post(f"{base}/next/").status_code == 201
    assert admin.get(f"{base}/notifications/?unread=true").json() == []

    # Back to the pool: no longer gold, its submission counts like any other
    assert admin.delete(f"{base}/gold/{golden.pk}/").status_code == 204
    assert Task.objects.get(pk=golden.pk).state != Task.State.GOLD
    assert admin.get(f"{base}/gold/{golden.pk}/").status_code == 404


def test_review_flow_sampled_rejected_returned_redone_accepted_complete(api, project, member):
    admin = api(project.created_by)
    base = f"/api/projects/{project.pk}"
    assert admin.patch(f"{base}/", {"review_rate": 0.0, "review_new_until": 1, "overlap": 1},
                       format="json").status_code == 200
    annotator, reviewer = member(), member(Role.REVIEWER)
    me, rev = api(annotator), api(reviewer)
    first_task, second_task = TaskFactory(project=project), TaskFactory(project=project)

    lease = me.post(f"{base}/next/").json()
    sub = me.post(f"{base}/leases/{lease['id']}/submit/", {"idempotency_key": "a", "text": "Paris is in Italy."},
                  format="json").json()
    queue = rev.get(f"{base}/review-queue/").json()["results"]
    assert [s["id"] for s in queue] == [sub["id"]]  # new annotator: always reviewed
    assert me.get(f"{base}/review-queue/").status_code == 403

    r = rev.post(f"{base}/submissions/{sub['id']}/review/", {"decision": "reject", "reason": "Check the country."},
                 format="json")
    assert r.status_code == 201
    mine = me.get(f"{base}/submissions/{sub['id']}/").json()
    assert mine["status"] == "rejected" and mine["review"]["reason"] == "Check the country."
    # The work came back: the same lease is open again for its annotator
    assert [item["id"] for item in me.get(f"{base}/leases/").json()] == [lease["id"]]
    redo = me.post(f"{base}/leases/{lease['id']}/submit/", {"idempotency_key": "b", "text": "Paris is in France."},
                   format="json")
    assert redo.status_code == 201
    assert [s["id"] for s in rev.get(f"{base}/review-queue/").json()["results"]] == [redo.json()["id"]]
    assert admin.get(f"{base}/tasks/?complete=true").json()["results"] == []
    rev.post(f"{base}/submissions/{redo.json()['id']}/review/", {"decision": "accept"}, format="json")
    done = admin.get(f"{base}/tasks/?complete=true").json()["results"]
    assert [t["id"] for t in done] == [first_task.pk] and done[0]["accepted_count"] == 1
    assert done[0]["completed_at"] is not None

    # One accepted: no longer new; review rate 0 -> not sampled, counted as accepted at once
    lease = me.post(f"{base}/next/").json()
    assert lease["task"]["id"] == second_task.pk
    me.post(f"{base}/leases/{lease['id']}/submit/", {"idempotency_key": "c", "text": "ok"}, format="json")
    assert rev.get(f"{base}/review-queue/").json()["results"] == []
    assert admin.get(f"{base}/tasks/counts/").json()["complete"] == 2
    assert admin.get(f"{base}/tasks/?complete=false").json()["results"] == []
    assert admin.get(f"{base}/tasks/?complete=maybe").status_code == 400


def test_agreement_endpoints_and_bad_parameters(api, project, member):
    admin = api(project.created_by)
    base = f"/api/projects/{project.pk}"
    admin.patch(f"{base}/", {"overlap": 2}, format="json")
    people = [member() for _ in range(2)]
    tasks = [comparison_task(project) for _ in range(2)]
    for person in people:
        for _ in tasks:
            lease = api(person).post(f"{base}/next/").json()
            ids = sorted(r["id"] for r in lease["task"]["replies"])
            api(person).post(f"{base}/leases/{lease['id']}/submit/",
                             {"idempotency_key": f"{person.pk}-{lease['id']}", "ranking": [[i] for i in ids]},
                             format="json")
    human = admin.get(f"{base}/quality/agreement/").json()
    assert human["rankings"]["alpha"] == 1.0 and human["rankings"]["mean_tau"] == 1.0
    assert human["by_instruction_version"][0]["instruction_version"] == 1
    both = admin.get(f"{base}/agreement/").json()
    assert both["human"]["rankings"] == human["rankings"] and both["ai_human"] == []
    engineer = member(Role.ENGINEER)
    assert api(engineer).get(f"{base}/quality/agreement/?instruction_version=1").status_code == 200
    assert admin.get(f"{base}/quality/agreement/?instruction_version=x").status_code == 400
    assert admin.get(f"{base}/quality/annotators/?days=0").status_code == 400
    assert admin.get(f"{base}/quality/annotators/?sort=password").status_code == 400
    r = admin.post(f"{base}/quality/rules/", {"metric": "acceptance_rate", "threshold": -0.5}, format="json")
    assert r.status_code == 400 and "0 to 1" in r.json()["detail"]
    r = admin.post(f"{base}/quality/rules/", {"metric": "acceptance_rate", "threshold": 0.5, "window": 3,
                                              "min_samples": 4}, format="json")
    assert r.status_code == 400
    rule = admin.post(f"{base}/quality/rules/", {"metric": "acceptance_rate", "threshold": 0.5},
                      format="json").json()
    patched = admin.patch(f"{base}/quality/rules/{rule['id']}/", {"active": False}, format="json")
    assert patched.json()["active"] is False
    assert admin.delete(f"{base}/quality/rules/{rule['id']}/").status_code == 204
    assert admin.delete(f"{base}/quality/rules/{rule['id']}/").status_code == 404
