import pytest

from annotations.models import DatasetSnapshot, Role

pytestmark = pytest.mark.django_db


def test_snapshot_post_records_every_filter_and_option(project, api, member):
    engineer = member(Role.ENGINEER)
    body = {"formats": ["dpo"], "min_agreement": 0.4, "completed_only": True, "exclude_pending_review": True,
            "exclude_gold": False, "eval_fraction": 0.2, "near_dup_threshold": 0.8, "seed": "run-2",
            "licence": "CC0", "date_from": "2026-01-01T00:00:00Z"}
    response = api(engineer).post(f"/api/projects/{project.pk}/snapshots/", body, format="json")
    assert response.status_code == 202, response.content
    snapshot = DatasetSnapshot.objects.get(pk=response.json()["id"])
    assert snapshot.formats == ["dpo"] and snapshot.status == "pending"
    assert snapshot.filters["min_agreement"] == 0.4 and snapshot.filters["completed_only"] is True
    assert snapshot.filters["exclude_pending_review"] is True and snapshot.filters["exclude_gold"] is False
    assert snapshot.filters["date_from"].startswith("2026-01-01")
    assert snapshot.options["seed"] == "run-2" and snapshot.options["near_dup_threshold"] == 0.8
    assert "NOT EXISTS" in snapshot.query  # screening exclusions, as an anti-join
    annotator = member(Role.ANNOTATOR)
    assert api(annotator).post(f"/api/projects/{project.pk}/snapshots/", {}, format="json").status_code == 403
