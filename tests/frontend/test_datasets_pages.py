"""The Datasets & finetunes pages without a browser: the snapshot form's filters reach the export
service and queue its job, the status endpoint reports progress and checked download links, the
finetune form starts a job, a job page shows its loss curve (server-drawn SVG) and its actions,
and each action is in the audit log."""
from __future__ import annotations

import re

import pytest

from annotations.exports.service import build_snapshot, create_snapshot
from annotations.models import AuditEntry, DatasetSnapshot, ModelVersion, Role
from annotations.services.instructions import publish_instructions
from models_service.models import FinetuneJob
from tests.annotations.exports.helpers import comparison, demonstration

pytestmark = pytest.mark.django_db
A = AuditEntry.Action


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")


@pytest.fixture
def engineer(member):
    return member(Role.ENGINEER)


def labelled(project):
    demonstration(project, [{"role": "user", "content": "Hi"}], ["Hello."])
    comparison(project, [{"role": "user", "content": "Pick"}], ["A", "B"], [[[0], [1]]])


def ready(project, **filters):
    labelled(project)
    return build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0, near_duplicates=False,
                                                      **filters).pk)


def snapshot_post(**fields):
    data = {"action": "snapshot", "snap-formats": ["sft", "dpo"], "snap-eval_fraction": "0.1",
            "snap-exclude_flagged": "on", "snap-exclude_gold": "on", "snap-near_duplicates": "on"}
    data.update({f"snap-{k}": v for k, v in fields.items()})
    return data


def test_snapshot_form_passes_every_filter_to_the_export_and_queues_its_job(client, project, engineer,
                                                                            django_capture_on_commit_callbacks):
    publish_instructions(project=project, body="# v2", published_by=project.created_by)
    client.force_login(engineer)
    url = f"/projects/{project.pk}/datasets/"
    page = client.get(url).content.decode()
    assert 'name="snap-instruction_versions" value="1"' in page and 'value="2"' in page
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(url, snapshot_post(
            name="accepted v2", instruction_versions=["2"], accepted_only="on", min_agreement="0.4",
            exclude_flagged="", exclude_gold="", date_from="2026-01-01", date_to="2026-06-30", licence="CC-BY-4.0"))
    snapshot = DatasetSnapshot.objects.get(project=project)
    assert response.status_code == 302 and response.url.endswith(f"#snapshot-{snapshot.pk}")
    assert len(queued) == 1  # the export job, sent once the snapshot row commits
    f = snapshot.filters
    assert f["instruction_versions"] == [2] and f["accepted_only"] and f["min_agreement"] == 0.4
    assert not f["exclude_flagged"] and not f["exclude_gold"]
    assert f["date_from"].startswith("2026-01-01T00:00") and f["date_to"].startswith("2026-06-30T23:59")
    assert snapshot.options["licence"] == "CC-BY-4.0" and snapshot.created_by == engineer
    entry = AuditEntry.objects.get(action=A.SNAPSHOT_CREATED, project=project)
    assert entry.actor == engineer and entry.target == f"snapshot {snapshot.pk}"


def test_snapshot_form_errors_keep_what_was_typed_and_store_nothing(client, project, engineer):
    client.force_login(engineer)
    response = client.post(f"/projects/{project.pk}/datasets/", snapshot_post(
        name="backwards", date_from="2026-06-30", date_to="2026-01-01", min_agreement="2"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "The end date is before the start date." in body and "less than or equal to 1" in body
    assert 'value="backwards"' in body
    assert not DatasetSnapshot.objects.exists() and not AuditEntry.objects.filter(action=A.SNAPSHOT_CREATED).exists()


def test_status_endpoint_reports_progress_and_checked_download_links(client, project, engineer, member):
    pending = create_snapshot(project=project, name="later")
    snapshot = ready(project)
    client.force_login(engineer)
    data = client.get(f"/projects/{project.pk}/datasets/status/").json()
    rows = {s["id"]: s for s in data["snapshots"]}
    assert rows[pending.pk]["status"] == "pending" and rows[pending.pk]["files"] == []
    done = rows[snapshot.pk]
    assert done["status"] == "ready" and done["content_sha256"] == snapshot.content_sha256
    assert done["rows"] == {"sft.train": 1, "dpo.train": 1} and "no gold" in done["filters"]
    links = {f["name"]: f["url"] for f in done["files"]}
    assert set(links) == set(snapshot.files)
    response = client.get(links["sft.train.jsonl"])
    assert response.status_code == 200
    assert b'"content":"Hello."' in b"".join(response.streaming_content)
    assert AuditEntry.objects.filter(action=A.EXPORT_DOWNLOADED, actor=engineer).count() == 1
    # the same links refuse the roles that may not take data out
    for role in (Role.ANNOTATOR, Role.REVIEWER):
        client.force_login(member(role))
        assert client.get(links["sft.train.jsonl"]).status_code == 403
    # and the page shows the same rows, with the hash and the links
    client.force_login(engineer)
    page = client.get(f"/projects/{project.pk}/datasets/").content.decode()
    assert snapshot.content_sha256[:12] in page and links["dpo.train.jsonl"].replace("?", "?") in page


def test_finetune_form_starts_a_job_and_the_job_page_shows_it(client, project, engineer,
                                                               django_capture_on_commit_callbacks):
    snapshot = ready(project)
    base = ModelVersion.objects.create(name="smol-base")
    ModelVersion.objects.create(name="an-adapter", base=base, adapter_path="/somewhere")
    client.force_login(engineer)
    url = f"/projects/{project.pk}/datasets/"
    page = client.get(url).content.decode()
    assert '<option value="smol-base"' in page and "an-adapter" not in page  # adapters are not bases
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(url, {
            "action": "finetune", "ft-snapshot": snapshot.pk, "ft-method": "sft", "ft-base_model": "smol-base",
            "ft-lora_r": "4", "ft-lora_alpha": "8", "ft-lora_dropout": "0", "ft-target_modules": "q_proj, v_proj",
            "ft-learning_rate": "0.001", "ft-max_steps": "3", "ft-batch_size": "2", "ft-max_length": "128",
            "ft-beta": "0.1"})
    job = FinetuneJob.objects.get(project=project)
    assert response.status_code == 302 and response.url == f"/projects/{project.pk}/finetunes/{job.pk}/"
    assert len(queued) == 1
    assert (job.method, job.base_model, job.snapshot) == ("sft", base, snapshot)
    assert job.params["lora_r"] == 4 and job.params["target_modules"] == ["q_proj", "v_proj"]
    assert job.params["max_steps"] == 3 and job.total_steps == 3
    assert AuditEntry.objects.get(action=A.FINETUNE_STARTED).actor == engineer
    body = client.get(response.url).content.decode()
    assert "Finetune" in body and "smol-base" in body and 'id="cancel-finetune"' in body
    assert f'/api/projects/{project.pk}/finetunes/{job.pk}/' in body  # what finetune.js polls


def test_finetune_form_refuses_dpo_on_a_snapshot_without_pairs(client, project, engineer):
    demonstration(project, [{"role": "user", "content": "Hi"}], ["Hello."])
    snapshot = build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0,
                                                          near_duplicates=False).pk)
    ModelVersion.objects.create(name="smol-base")
    client.force_login(engineer)
    response = client.post(f"/projects/{project.pk}/datasets/", {
        "action": "finetune", "ft-snapshot": snapshot.pk, "ft-method": "dpo", "ft-base_model": "smol-base",
        "ft-lora_r": "8", "ft-lora_alpha": "16", "ft-lora_dropout": "0.05", "ft-target_modules": "q_proj",
        "ft-learning_rate": "0.0002", "ft-max_steps": "3", "ft-batch_size": "2", "ft-max_length": "128",
        "ft-beta": "0.1"})
    assert response.status_code == 200 and "no dpo training rows" in response.content.decode()
    assert not FinetuneJob.objects.exists()


@pytest.fixture
def finished(project):
    snapshot = ready(project)
    base = ModelVersion.objects.create(name="smol-base")
    tuned = ModelVersion.objects.create(name="smol-base-sft-ft1", base=base, adapter_path="/adapters/1")
    metrics = [{"step": i, "loss": 3.0 - 0.25 * i, "tokens": 100 * i} for i in range(1, 9)]
    metrics[3]["loss"] = None  # a non-finite step, reported as null by the trainer
    return FinetuneJob.objects.create(project=project, snapshot=snapshot, method="sft", base_model=base,
                                      status="done", step=8, total_steps=8, progress=1, metrics=metrics,
                                      result_model=tuned, log="step 8 done <script>x</script>")


def test_loss_curve_is_an_svg_of_every_finite_step(client, project, engineer, finished):
    client.force_login(engineer)
    response = client.get(f"/projects/{project.pk}/finetunes/{finished.pk}/loss.svg")
    assert response.status_code == 200 and response["Content-Type"].startswith("image/svg+xml")
    svg = response.content.decode()
    points = re.search(r'<polyline[^>]*points="([^"]+)"', svg).group(1).split()
    assert len(points) == 7  # 8 steps, one without a finite loss
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys)  # the loss falls, so the line goes down the picture (y grows)
    assert "<script" not in svg and "2.75 at step 1" in svg and "1.0 at step 8" in svg
    page = client.get(f"/projects/{project.pk}/finetunes/{finished.pk}/").content.decode()
    assert f'src="/projects/{project.pk}/finetunes/{finished.pk}/loss.svg?step=8"' in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page  # the log is text
    empty = FinetuneJob.objects.create(project=project, snapshot=finished.snapshot, method="sft",
                                       base_model=finished.base_model)
    svg = client.get(f"/projects/{project.pk}/finetunes/{empty.pk}/loss.svg").content.decode()
    assert "No training steps yet." in svg and "<polyline" not in svg


def test_admin_makes_the_finetuned_model_the_drafting_model_engineer_may_not(client, project, engineer, finished):
    url = f"/projects/{project.pk}/finetunes/{finished.pk}/"
    client.force_login(engineer)
    assert 'id="use-for-drafting"' not in client.get(url).content.decode()
    assert client.post(url, {"action": "use-for-drafting"}).status_code == 403
    project.refresh_from_db()
    assert project.draft_model is None
    client.force_login(project.created_by)
    assert 'id="use-for-drafting"' in client.get(url).content.decode()
    assert client.post(url, {"action": "use-for-drafting"}).status_code == 302
    project.refresh_from_db()
    assert project.draft_model == finished.result_model
    entry = AuditEntry.objects.get(action=A.PROJECT_SETTINGS, project=project)
    assert entry.details == {"draft_model": [None, finished.result_model.pk]}
    assert "drafting model" in client.get(url).content.decode()


def test_cancel_and_retry_from_the_job_page_are_audited(client, project, engineer, finished,
                                                         django_capture_on_commit_callbacks):
    job = FinetuneJob.objects.create(project=project, snapshot=finished.snapshot, method="sft",
                                     base_model=finished.base_model, status="running", step=2)
    url = f"/projects/{project.pk}/finetunes/{job.pk}/"
    client.force_login(engineer)
    assert client.post(url, {"action": "cancel"}).status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert 'id="retry-finetune"' in client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        client.post(url, {"action": "retry"})
    job.refresh_from_db()
    assert job.status == "pending" and len(queued) == 1
    assert [e.action for e in AuditEntry.objects.filter(target=f"finetune {job.pk}").order_by("id")] == [
        A.FINETUNE_CANCELLED, A.FINETUNE_RETRIED]
    response = client.post(url, {"action": "retry"}, follow=True)  # not failed or cancelled any more
    assert "Only failed or cancelled jobs can be retried" in response.content.decode()


def test_another_projects_finetune_is_not_found(client, project, engineer, finished):
    from tests.factories import ProjectFactory

    other = ProjectFactory()
    client.force_login(other.created_by)
    for suffix in ("", "loss.svg"):
        assert client.get(f"/projects/{other.pk}/finetunes/{finished.pk}/{suffix}").status_code == 404
    assert client.post(f"/projects/{other.pk}/finetunes/{finished.pk}/", {"action": "cancel"}).status_code == 404


def test_snapshot_names_render_as_text(client, project, engineer):
    create_snapshot(project=project, name='<img src=x onerror="alert(1)">')
    client.force_login(engineer)
    body = client.get(f"/projects/{project.pk}/datasets/").content.decode()
    assert "<img src=x" not in body and "&lt;img src=x" in body
