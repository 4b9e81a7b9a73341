"""Screenshots of the main pages at 1280x800 into docs/screenshots/. Not part of the normal run:
LW_SCREENSHOTS=1 pytest tests/frontend/test_screenshots.py"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.utils import timezone

from django.contrib.auth import get_user_model

from annotations.models import ImportBatch, Role, Submission
from annotations.services import leases, submissions
from annotations.services.instructions import publish_instructions
from frontend.models import InstructionAcknowledgement

from ..factories import MembershipFactory, ProjectFactory, UserFactory
from .conftest import comparison_task, demonstration_task

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("LW_SCREENSHOTS"), reason="set LW_SCREENSHOTS=1 to take screenshots"),
]
User = get_user_model()
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

INSTRUCTIONS_V1 = """# Support assistant: reply guidelines

Write the reply an expert, friendly support agent would send.

## Always
- Answer the question that was asked first, then add what the user needs next.
- Use numbered steps for procedures; keep each step to one action.
- Say plainly when you are not sure, and how the user can check.

## Never
- Invent order numbers, prices or policies.
- Ask for passwords or full card numbers.

## Ranking comparisons
Rank by **helpfulness** first, then truthfulness, then tone. Use a tie when two replies are
equally good; flag replies that are unsafe or contain personal data.
"""
INSTRUCTIONS_V2 = INSTRUCTIONS_V1.replace(
    "- Ask for passwords or full card numbers.",
    "- Ask for passwords or full card numbers.\n- Promise refunds: link to the refund policy instead.",
).replace("then tone.", "then tone. A correct refusal beats a confident wrong answer.")

PROMPT = ("I ordered a standing desk two weeks ago and the tracking page still says \"label created\". "
          "Is my order lost? I need it before the end of the month.")
DRAFTS = (
    "I'm sorry for the wait! \"Label created\" means the seller has prepared the shipment but the carrier hasn't "
    "scanned it yet. Here's what you can do:\n\n1. Check the estimated delivery date in your order details.\n"
    "2. If there's been no scan for 5 business days, contact the seller from the order page.\n"
    "3. If you need it by a fixed date, ask the seller whether they can upgrade the shipping.",
    "Your order is probably not lost. Large items like desks often ship from a warehouse that batches "
    "pickups, so the status can stay at \"label created\" for several days. If nothing changes within a "
    "week, request a replacement or refund.",
    "Unfortunately it looks like your package was lost. I have issued a full refund to your card ending in 4242.",
)
REPLIES = (
    "Yes — if tracking hasn't updated in two weeks, the parcel may be stuck. Contact the seller and ask them to "
    "open a carrier trace; most sellers will reship or refund after a trace.",
    "Tracking that stays on \"label created\" usually means the carrier never picked the parcel up. Ask the seller "
    "to confirm the pickup date. If they can't, you can request a cancellation from your order page.",
    "Lost orders happen. Please send me your full card number and billing address so I can verify your identity.",
    "Don't worry, it will arrive tomorrow.",
)


def shoot(page, name):
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"))


def test_screenshots(page, live_server, logged_in):
    admin = UserFactory(username="maria")
    sam = UserFactory(username="sam")
    project = ProjectFactory(name="Support assistant · SFT round 3", created_by=admin, instructions=INSTRUCTIONS_V1,
                             description="Demonstrations and 4-way comparisons for the support model.")
    MembershipFactory(project=project, user=sam, role=Role.ANNOTATOR)
    for name, role in (("lee", Role.REVIEWER), ("ana", Role.ANNOTATOR), ("kim", Role.ENGINEER)):
        MembershipFactory(project=project, user=UserFactory(username=name), role=role)
    other = ProjectFactory(name="Safety red-team comparisons", created_by=admin)
    MembershipFactory(project=other, user=sam, role=Role.REVIEWER)
    InstructionAcknowledgement.objects.create(user=sam, project=project, version=project.current_instructions)

    # Some finished work for the stats and the submissions list.
    for i in range(3):
        demonstration_task(project, prompt=f"How do I change the delivery address of order {i}?",
                           drafts=(f"Open Orders, pick order {i}, then choose Change address.",))
        lease = leases.lease_next_task(project=project, annotator=sam)
        submissions.submit_demonstration(
            lease_id=lease.pk, annotator=sam, idempotency_key=f"shot-{i}", time_spent_ms=41_000 + 9_000 * i,
            text=f"Open **Orders**, select order {i} and choose *Change address*. Changes are possible until the "
                 "parcel ships.", rationale="Draft was right but missed the shipping cut-off.")
    publish_instructions(project=project, body=INSTRUCTIONS_V2, published_by=admin, title="Refund promises")
    project.refresh_from_db()
    demonstration_task(project, prompt=PROMPT, drafts=DRAFTS)
    comparison_task(project, replies=REPLIES, conversation=[{"role": "user", "content": PROMPT}])
    ImportBatch.objects.create(project=project, file_name="support-prompts-2024-06.jsonl", format="jsonl",
                               status="done", rows_total=1250, rows_done=1250, tasks_created=1231, duplicates=19,
                               created_by=admin, finished_at=timezone.now())
    ImportBatch.objects.create(project=project, file_name="escalations.csv", format="csv", status="failed",
                               rows_total=310, rows_done=310, error_count=2, created_by=admin,
                               errors=[{"line": 14, "reason": "prompt is empty"},
                                       {"line": 202, "reason": "kind must be demonstration or comparison"}],
                               finished_at=timezone.now())

    logged_in(sam).goto(live_server.url + "/")
    shoot(page, "home")

    page.get_by_role("button", name="Start labelling").first.click()
    page.wait_for_selector("#label-app[data-ready]")
    page.locator(".draft").first.get_by_role("button", name="Use").click()
    page.locator("#reply-text").type("\n\nI can't see your order from here, but the seller can.")
    page.locator("#instructions-banner details").evaluate("d => d.open = true")
    shoot(page, "demonstration")

    page.evaluate("localStorage.clear()")
    lease = leases.lease_next_task(project=project, annotator=sam)
    page.goto(f"{live_server.url}/projects/{project.pk}/label/{lease.pk}/")
    page.wait_for_selector("#label-app[data-ready]")
    for key in ("j", "1", "j", "1", "j", "4", "j", "3"):
        page.keyboard.press(key)
    first = page.locator(".reply").first
    first.locator("select[data-criterion=helpful]").select_option("6")
    first.locator("select[data-criterion=truthful]").select_option("7")
    first.locator("select[data-criterion=harmless]").select_option("7")
    page.locator(".reply").nth(2).locator("input[data-flag=factually_wrong]").check()
    page.fill("#rationale", "A and B give the same correct advice; D promises a date nobody can know.")
    page.locator(".reply").nth(1).focus()
    shoot(page, "comparison")
    page.keyboard.press("?")
    shoot(page, "shortcuts")

    page.context.clear_cookies()
    logged_in(admin)
    page.goto(f"{live_server.url}/projects/{project.pk}/submissions/")
    shoot(page, "submissions")
    page.goto(f"{live_server.url}/projects/{project.pk}/instructions/?diff=2")
    shoot(page, "instructions")
    page.goto(f"{live_server.url}/projects/{project.pk}/settings/")
    shoot(page, "settings")
    page.goto(f"{live_server.url}/projects/{project.pk}/imports/")
    shoot(page, "imports")
    failed = ImportBatch.objects.get(file_name="escalations.csv")
    page.goto(f"{live_server.url}/projects/{project.pk}/imports/{failed.pk}/")
    shoot(page, "import-report")

    # The review queue: lee reviews sam's oldest reply, next to the model's critique of it.
    from models_service.models import Critique

    from .conftest import model_version

    oldest = Submission.objects.filter(project=project).order_by("id").first()
    Critique.objects.create(
        submission=oldest, model_version=model_version(), instruction_version=oldest.instruction_version,
        status="done", verdict="revise", scores={"helpful": 6, "truthful": 3, "harmless": 7},
        issues=[{"quote": "Changes are possible until the parcel ships.",
                 "problem": "States a policy the instructions say never to invent; the cut-off differs by seller.",
                 "suggestion": "Say the address can usually be changed before shipping and point to the order page."}])
    page.context.clear_cookies()
    logged_in(User.objects.get(username="lee"))
    page.goto(f"{live_server.url}/projects/{project.pk}/review/")
    page.wait_for_selector("#review-form[data-ready]")
    page.fill("#reason", "The shipping cut-off is invented; see “Never” in the instructions.")
    shoot(page, "review")


def test_arena_screenshots(page, live_server, logged_in):
    """The arena's battle page (before and after the vote) and the leaderboard."""
    import random

    from models_service.evaluation.models import BattleVote, JudgeVote
    from models_service.evaluation.voting import cast_vote, next_battle

    from .conftest import eval_run_with_battles

    project = ProjectFactory(name="Support assistant", instructions=INSTRUCTIONS_V1)
    voters = []
    for name in ("sam", "lee", "kim"):
        user = UserFactory(username=name)
        MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
        voters.append(user)
    replies = [(DRAFTS[0], DRAFTS[1])] + [(f"Reply {i} from the base model.", f"Reply {i} from the tuned one.")
                                          for i in range(1, 30)]
    run = eval_run_with_battles(project, n=30, replies=replies,
                                names=("smollm2-135m-instruct", "smollm2-135m-instruct-sft-ft1"))
    run.eval_set.prompts.filter(prompt_key="k0").update(conversation=[{"role": "user", "content": PROMPT}])
    judge = run.model_versions.get(name="smollm2-135m-instruct")
    rng = random.Random(4)
    for battle in run.battles.all():
        for user in voters[1:]:
            BattleVote.objects.create(battle=battle, voter=user, shown_at=timezone.now())
            cast_vote(project=project, voter=user, battle_id=battle.pk,
                      choice=rng.choices(["a", "b", "tie", "both_bad"], [2, 4, 2, 1])[0])
        judged = rng.choices(["a", "b", "tie"], [3, 4, 3])[0]
        JudgeVote.objects.create(battle=battle, judge_model=judge, choice=judged,
                                 left_first={"a": "A", "b": "B", "tie": "A"}[judged],
                                 right_first={"a": "B", "b": "A", "tie": "A"}[judged])
    first = run.battles.get(prompt__prompt_key="k0")
    BattleVote.objects.create(battle=first, voter=voters[0], shown_at=timezone.now())
    logged_in(voters[0])
    page.goto(f"{live_server.url}/projects/{project.pk}/arena/{first.pk}/")
    page.wait_for_selector("#arena-app[data-ready]")
    shoot(page, "arena")
    page.keyboard.press("a")
    page.wait_for_selector("#reveal:not([hidden])")
    shoot(page, "arena-voted")
    assert next_battle is not None
    page.context.clear_cookies()
    logged_in(project.created_by)
    page.goto(f"{live_server.url}/projects/{project.pk}/leaderboard/")
    page.set_viewport_size({"width": 1280, "height": 1300})
    shoot(page, "leaderboard")


def test_quality_screenshots(page, live_server, logged_in):
    """The quality page (annotators, agreement, rules, a paused annotator and the admin's
    notification), one annotator's detail, and the gold page with a reference."""
    import random

    from annotations.models import Project, Task
    from annotations.quality import gold, rules
    from annotations.services import reviews

    rng = random.Random(5)
    admin = UserFactory(username="maria")
    project = ProjectFactory(name="Support assistant · SFT round 3", created_by=admin, instructions=INSTRUCTIONS_V1)
    Project.objects.filter(pk=project.pk).update(overlap=3, review_rate=0.3, review_new_until=3, gold_rate=0.1)
    project.refresh_from_db()
    reviewer = UserFactory(username="lee")
    MembershipFactory(project=project, user=reviewer, role=Role.REVIEWER)
    people = {}
    skills = {"sam": 0.9, "ana": 0.8, "kim": 0.7, "raj": 0.15}
    for name in skills:
        people[name] = UserFactory(username=name)
        MembershipFactory(project=project, user=people[name], role=Role.ANNOTATOR)
    rules.create_rule(project=project, created_by=admin, metric="gold_accuracy", threshold=0.6, min_samples=3,
                      window=20)
    rules.create_rule(project=project, created_by=admin, metric="acceptance_rate", threshold=0.5, min_samples=5,
                      window=20, action="notify")
    golden = [comparison_task(project, replies=REPLIES,
                              conversation=[{"role": "user", "content": f"{PROMPT} ({i})"}])[0] for i in range(4)]
    for task in golden:
        ids = sorted(task.replies.values_list("pk", flat=True))
        gold.set_gold(project=project, task_id=task.pk, created_by=admin,
                      ranking=[[ids[1]], [ids[0]], [ids[3]], [ids[2]]],
                      note="B explains the status; C asks for card data.")
    for i in range(8):
        comparison_task(project, replies=REPLIES, conversation=[{"role": "user", "content": f"{PROMPT} [{i}]"}])
    for name, person in people.items():
        Project.objects.filter(pk=project.pk).update(gold_rate=1.0 if name != "kim" else 0.5)
        project.refresh_from_db()
        for n in range(6):
            try:
                lease = leases.lease_next_task(project=project, annotator=person)
            except Exception:
                break
            task = Task.objects.get(pk=lease.task_id)
            ids = sorted(task.replies.values_list("pk", flat=True))
            best = [[ids[1]], [ids[0]], [ids[3]], [ids[2]]]
            ranking = best if rng.random() < skills[name] else [[i] for i in rng.sample(ids, len(ids))]
            if rng.random() < 0.3:
                ranking = [ranking[0] + ranking[1]] + ranking[2:]
            submissions.submit_ranking(lease_id=lease.pk, annotator=person, idempotency_key=f"q-{name}-{n}",
                                       ranking=ranking, time_spent_ms=rng.randint(25_000, 140_000),
                                       ratings={str(ids[1]): {"helpful": rng.randint(5, 7), "truthful": 7}})
    for sub in Submission.objects.filter(project=project, review_required=True, status="submitted")[:6]:
        decision = "reject" if sub.annotator.username == "raj" else "accept"
        reviews.review_submission(submission_id=sub.pk, reviewer=reviewer, decision=decision,
                                  reason="Ranks the unsafe reply above a helpful one." if decision == "reject" else "")
    logged_in(admin)
    page.goto(f"{live_server.url}/projects/{project.pk}/quality/")
    page.set_viewport_size({"width": 1280, "height": 1250})
    shoot(page, "quality")
    page.goto(f"{live_server.url}/projects/{project.pk}/quality/annotators/{people['raj'].pk}/")
    shoot(page, "quality-annotator")
    page.goto(f"{live_server.url}/projects/{project.pk}/gold/?task={golden[0].pk}")
    shoot(page, "gold")


def test_datasets_screenshots(page, live_server, logged_in, settings, tmp_path):
    """The Datasets & finetunes page and a finetune's page, from a real export and a real tiny LoRA
    run on the bundled model (about a minute on a laptop CPU)."""
    from annotations.exports.service import build_snapshot, create_snapshot
    from annotations.models import DatasetSnapshot, ModelVersion
    from models_service.finetune.service import create_finetune_job, run_finetune_job
    from models_service.model_files import prepare_model
    from tests.annotations.exports.helpers import comparison, demonstration

    settings.EXPORT_SNAPSHOT_ROOT = str(tmp_path / "snapshots")
    settings.FINETUNE_ROOT = str(tmp_path / "finetunes")
    admin = UserFactory(username="maria")
    project = ProjectFactory(name="Support assistant · SFT round 3", created_by=admin, instructions=INSTRUCTIONS_V1)
    kim = UserFactory(username="kim")
    MembershipFactory(project=project, user=kim, role=Role.ENGINEER)
    for i in range(24):
        demonstration(project, [{"role": "user", "content": f"How do I change the delivery address of order {i}?"}],
                      [f"Open Orders, select order {i} and choose Change address; it works until the parcel ships."],
                      status="accepted")
        comparison(project, [{"role": "user", "content": f"{PROMPT} ({i})"}], list(REPLIES),
                   [[[1], [0], [3], [2]], [[1, 0], [3], [2]]])
    first = build_snapshot(snapshot_id=create_snapshot(project=project, created_by=kim, name="round 3, all work",
                                                       eval_fraction=0.1, near_duplicates=False,
                                                       licence="CC-BY-4.0").pk)
    build_snapshot(snapshot_id=create_snapshot(project=project, created_by=kim, name="accepted only",
                                               accepted_only=True, formats=["sft"], eval_fraction=0.1,
                                               near_duplicates=False).pk)
    running = create_snapshot(project=project, created_by=kim, name="agreement ≥ 0.5", min_agreement=0.5,
                              formats=["dpo"])
    DatasetSnapshot.objects.filter(pk=running.pk).update(status="running", progress=0.42, records_done=21)
    base = ModelVersion.objects.create(name="smollm2-135m-instruct", base_model=str(prepare_model()))
    job = create_finetune_job(project=project, snapshot=first, method="sft", base_model=base, created_by=kim,
                              enqueue=False, params={"max_steps": 16, "batch_size": 4, "max_length": 128,
                                                     "learning_rate": 1e-3})
    job = run_finetune_job(job_id=job.pk)
    assert job.status == "done", job.error
    create_finetune_job(project=project, snapshot=first, method="dpo", base_model=base, created_by=kim,
                        enqueue=False, params={"max_steps": 40})
    logged_in(kim)
    page.goto(f"{live_server.url}/projects/{project.pk}/datasets/")
    page.wait_for_selector("#datasets-app[data-ready]")
    page.set_viewport_size({"width": 1440, "height": 1180})
    shoot(page, "datasets")
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.context.clear_cookies()
    logged_in(admin)
    page.goto(f"{live_server.url}/projects/{project.pk}/finetunes/{job.pk}/")
    page.wait_for_selector("#finetune-app[data-ready]")
    page.wait_for_function("document.getElementById('loss-plot').complete")
    shoot(page, "finetune")
