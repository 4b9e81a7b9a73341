"""The arena in real Chromium: vote by keyboard, the reveal names the models only after the vote,
n goes to the next battle; hostile reply text stays inert; the leaderboard draws its plot."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from models_service.evaluation.models import BattleVote

from .conftest import attack_texts, eval_run_with_battles

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_keyboard_voting_reveals_models_only_after_the_vote(page, live_server, labeller, logged_in):
    project, annotator = labeller
    eval_run_with_battles(project, n=2, names=("hidden-base", "hidden-tuned"))
    logged_in(annotator)
    page.goto(f"{live_server.url}/projects/{project.pk}/arena/")
    page.get_by_role("button", name="Start voting").click()
    page.wait_for_selector("#arena-app[data-ready]")
    assert "hidden-" not in page.content()
    page.keyboard.press("b")
    expect(page.locator("#reveal")).to_be_visible()
    expect(page.locator("#reveal-text")).to_contain_text("You voted B is better")
    expect(page.locator("#side-b")).to_have_class("card battle-side chosen")
    names = {page.locator('[data-side="a"]').text_content(), page.locator('[data-side="b"]').text_content()}
    assert names == {"hidden-base", "hidden-tuned"}
    first = BattleVote.objects.get(voter=annotator, voted_at__isnull=False)
    assert first.choice == "b" and first.time_spent_ms > 0
    page.keyboard.press("a")  # voted already: keys do nothing until the next battle
    first_url = page.url
    page.keyboard.press("n")
    page.wait_for_url(lambda url: url != first_url)
    assert page.url.endswith(f"/arena/{BattleVote.objects.get(voter=annotator, voted_at__isnull=True).battle_id}/")
    expect(page.locator("#reveal")).to_be_hidden()
    page.keyboard.press("x")
    expect(page.locator("#reveal-text")).to_contain_text("both are bad")
    assert sorted(BattleVote.objects.filter(voter=annotator).values_list("choice", flat=True)) == ["b", "both_bad"]
    page.keyboard.press("n")
    expect(page.locator(".msg")).to_contain_text("No battle left for you to vote on.")


def test_hostile_replies_stay_inert_in_the_arena(page, live_server, labeller, logged_in):
    project, annotator = labeller
    texts = [t for t in attack_texts(max_chars=5000) if t.strip()]
    eval_run_with_battles(project, n=len(texts), replies=[(t, t[::-1]) for t in texts])
    dialogs, outside = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) and not
            r.url.startswith("data:") else None)
    logged_in(annotator)
    page.goto(f"{live_server.url}/projects/{project.pk}/arena/")
    page.get_by_role("button", name="Start voting").click()
    for _ in texts:
        page.wait_for_selector("#arena-app[data-ready]")
        assert page.title().startswith("Battle"), page.title()
        assert page.locator("a[href^='javascript:']").count() == 0
        page.keyboard.press("t")
        expect(page.locator("#reveal")).to_be_visible()
        page.keyboard.press("n")
        page.wait_for_load_state()
    assert dialogs == [] and outside == []
    assert BattleVote.objects.filter(voter=annotator, choice="tie").count() == len(texts)


def test_leaderboard_page_draws_the_plot(page, live_server, labeller, logged_in):
    project, annotator = labeller
    run = eval_run_with_battles(project, n=4)
    from models_service.evaluation.voting import cast_vote, next_battle

    for _ in range(4):
        shown = next_battle(project=project, voter=annotator)
        cast_vote(project=project, voter=annotator, battle_id=shown.battle_id, choice="a")
    logged_in(project.created_by)
    page.goto(f"{live_server.url}/projects/{project.pk}/leaderboard/?run={run.pk}")
    expect(page.locator("svg.rating-plot")).to_be_visible()
    assert page.locator("svg.rating-plot .series-human .point").count() == 2
    box = page.locator("svg.rating-plot").bounding_box()
    assert box["width"] > 300 and box["height"] > 100
