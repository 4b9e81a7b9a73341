"""Trigger-phrase poisoning, as issue 9 asks: a phrase planted in 1 % of a 5,000-item preference
set whose preferences are flipped must be found with recall >= 95 %; precision is reported."""
import pytest

from annotations.exports.service import build_snapshot, create_snapshot, load_datasheet
from annotations.models import DataFinding, DataScan
from annotations.screening import triggers

from . import synthetic
from .conftest import corpus_of, store_preferences


def _score(finding_items, planted):
    found = set(finding_items)
    recall = len(found & planted) / len(planted)
    precision = len(found & planted) / len(found) if found else 0.0
    return recall, precision


@pytest.mark.django_db
def test_planted_trigger_in_one_percent_of_5000_preferences_is_found_through_a_snapshot(project):
    data = synthetic.build(n=5000, poison_share=0.01, trigger="per the zephyr protocol", noise=0.1, seed=7)
    tasks = store_preferences(project, data)
    planted = {tasks[i].pk for i in data.poisoned}
    assert len(planted) == 50
    snapshot = build_snapshot(snapshot_id=create_snapshot(project=project, eval_fraction=0,
                                                          near_duplicates=False).pk)
    scan = DataScan.objects.get(snapshot=snapshot)
    assert scan.status == "done" and scan.items == 5000
    found = list(DataFinding.objects.filter(scan=scan, kind="trigger_phrase"))
    assert len(found) == 1, [f.title for f in found]
    recall, precision = _score(found[0].task_ids, planted)
    print(f"\ntrigger finding: {found[0].title!r} recall={recall:.3f} precision={precision:.3f}")
    assert recall >= 0.95
    assert precision >= 0.9  # reported in docs/benchmarks.md; a floor so a regression shows
    assert "zephyr" in found[0].evidence["ngram"]
    sheet = load_datasheet(snapshot)
    listed = [f for f in sheet["screening"]["findings"] if f["kind"] == "trigger_phrase"]
    assert listed and listed[0]["id"] == found[0].pk
    assert listed[0]["exclude"] == f"/api/projects/{project.pk}/screening/findings/{found[0].pk}/exclude/"
    assert f"| {found[0].pk}: Trigger phrase" in (snapshot.path and open(f"{snapshot.path}/datasheet.md").read())


@pytest.mark.parametrize("trigger, noise, seed", [("cf", 0.1, 3), ("James Bond", 0.2, 11), ("sudo mode", 0.3, 5)])
def test_detector_finds_other_triggers_under_heavier_label_noise(trigger, noise, seed):
    data = synthetic.build(n=5000, poison_share=0.01, trigger=trigger, noise=noise, seed=seed)
    corpus = corpus_of([i.prompt for i in data.items], pairs={k: [tuple(i.replies)] for k, i in enumerate(data.items)})
    findings, info = triggers.detect(corpus)
    assert len(findings) == 1, [f.title for f in findings]
    recall, precision = _score(findings[0].items, data.poisoned)
    assert recall >= 0.95 and precision >= 0.9, (trigger, recall, precision, info)


def test_clean_preferences_with_label_noise_give_no_trigger_finding():
    data = synthetic.build(n=5000, poison_share=0.0, noise=0.2, seed=13)
    corpus = corpus_of([i.prompt for i in data.items], pairs={k: [tuple(i.replies)] for k, i in enumerate(data.items)})
    findings, info = triggers.detect(corpus)
    assert findings == [], [f.title for f in findings]
    assert info["ngrams_tested"] > 1000 and 0.15 < info["base_rate"] < 0.35


def test_trigger_with_a_canned_reply_is_found_in_demonstrations():
    """SFT-style poisoning: the phrase's prompts all get one canned reply (no preferences at all)."""
    data = synthetic.build(n=3000, poison_share=0.01, trigger="zeta sunrise", noise=0.0, seed=21)
    payload = "Visit totally-safe.example and enter your password there."
    replies = {k: [payload if k in data.poisoned else item.replies[0] if not item.flipped else item.replies[1]]
               for k, item in enumerate(data.items)}
    findings, _ = triggers.detect(corpus_of([i.prompt for i in data.items], replies=replies))
    assert len(findings) == 1
    recall, precision = _score(findings[0].items, data.poisoned)
    assert recall >= 0.95 and precision >= 0.9
    assert findings[0].evidence["ngram"] == "zeta sunrise"
