"""Arena and leaderboard pages without a browser: blind battles, never the same one twice, hostile
reply text rendered inert, the leaderboard's SVG plot and tables."""
from __future__ import annotations

import pytest

from annotations.models import Role
from models_service.evaluation.models import BattleVote, JudgeVote
from frontend.rendering import render_plain
from models_service.evaluation.voting import cast_vote

from ..factories import MembershipFactory, UserFactory
from .conftest import attack_texts, eval_run_with_battles

pytestmark = pytest.mark.django_db


def member(project, role=Role.ANNOTATOR):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


def test_a_battle_page_never_names_the_models_and_each_battle_is_shown_once(client, project):
    eval_run_with_battles(project, n=2, names=("secret-base", "secret-finetuned"))
    user = member(project)
    client.force_login(user)
    home = client.get(f"/projects/{project.pk}/arena/").content.decode()
    assert "2 left for you" in home
    shown = []
    for _ in range(2):
        response = client.post(f"/projects/{project.pk}/arena/next/")
        assert response.status_code == 302
        page = client.get(response.url).content.decode()
        assert "secret-base" not in page and "secret-finetuned" not in page
        assert 'data-vote-url="/api/projects/' in page and "Reply A" in page
        battle_id = int(response.url.rstrip("/").rsplit("/", 1)[1])
        # a reload is the same showing; the next battle only comes after a vote
        assert client.post(f"/projects/{project.pk}/arena/next/").url == response.url
        cast_vote(project=project, voter=user, battle_id=battle_id, choice="tie")
        shown.append(battle_id)
        voted_again = client.get(response.url, follow=True)
        assert b"You already voted on that battle." in voted_again.content
    assert len(set(shown)) == 2
    done = client.post(f"/projects/{project.pk}/arena/next/", follow=True)
    assert b"No battle left for you to vote on." in done.content


def test_a_battle_not_shown_to_me_is_404(client, project):
    run = eval_run_with_battles(project, n=1)
    client.force_login(member(project))
    assert client.get(f"/projects/{project.pk}/arena/{run.battles.first().pk}/").status_code == 404


def test_hostile_reply_text_goes_through_the_sanitising_renderer(client, project):
    texts = [t for t in attack_texts(max_chars=5000) if t.strip()][:12]
    eval_run_with_battles(project, n=len(texts), replies=[(t, "Plain reply.") for t in texts])
    user = member(project)
    client.force_login(user)
    for _ in texts:
        page = client.get(client.post(f"/projects/{project.pk}/arena/next/").url).content.decode()
        vote = BattleVote.objects.select_related("battle__left").get(voter=user, voted_at__isnull=True)
        text = vote.battle.left.content
        assert str(render_plain(text)) in page
        if "<" in text:
            assert text not in page
        for chunk in page.split("<script")[1:]:
            assert chunk.split(">")[0].strip().startswith("src="), chunk[:80]
        cast_vote(project=project, voter=user, battle_id=vote.battle_id, choice="a")


def test_leaderboard_page_plots_ratings_with_intervals_for_people_and_judge(client, project):
    run = eval_run_with_battles(project, n=6, names=("base-<b>model</b>", "tuned"))
    judge = run.model_versions.get(name="tuned")
    voters = [member(project) for _ in range(2)]
    for battle in run.battles.select_related("left"):
        for user in voters:
            BattleVote.objects.create(battle=battle, voter=user, shown_at=battle.created_at)
            cast_vote(project=project, voter=user, battle_id=battle.pk, choice="b")  # right = "tuned"
        JudgeVote.objects.create(battle=battle, judge_model=judge, left_first="B", right_first="A", choice="b")
    client.force_login(member(project, Role.ENGINEER))
    page = client.get(f"/projects/{project.pk}/leaderboard/").content.decode()
    assert '<svg class="rating-plot"' in page and page.count('class="point"') == 4  # 2 models x 2 boards
    assert "base-&lt;b&gt;model&lt;/b&gt;" in page and "<b>model</b>" not in page
    assert "they agree\n    12 times" in page or "12 times" in page
    assert " style=" not in page and "<style" not in page
    for chunk in page.split("<script")[1:]:
        assert chunk.split(">")[0].strip().startswith("src=")
    # a run filter and junk parameters do not break the page
    assert client.get(f"/projects/{project.pk}/leaderboard/?run={run.pk}&bootstrap=x").status_code == 200


def test_leaderboard_page_without_votes_explains_what_to_do(client, project):
    client.force_login(project.created_by)
    page = client.get(f"/projects/{project.pk}/leaderboard/").content.decode()
    assert "No votes yet" in page and "<svg" not in page
