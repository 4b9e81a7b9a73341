from django.urls import path

from . import api

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "eval-sets/", api.EvalSetListView.as_view(), name="eval-set-list"),
    path(P + "eval-sets/<int:eval_set_id>/", api.EvalSetDetailView.as_view(), name="eval-set-detail"),
    path(P + "eval-runs/", api.EvalRunListView.as_view(), name="eval-run-list"),
    path(P + "eval-runs/<int:eval_run_id>/", api.EvalRunDetailView.as_view(), name="eval-run-detail"),
    path(P + "eval-runs/<int:eval_run_id>/cancel/", api.EvalRunCancelView.as_view(), name="eval-run-cancel"),
    path(P + "battles/next/", api.NextBattleView.as_view(), name="battle-next"),
    path(P + "battles/<int:battle_id>/vote/", api.BattleVoteView.as_view(), name="battle-vote"),
    path(P + "leaderboard/", api.LeaderboardView.as_view(), name="leaderboard"),
]
