from django.urls import path

from . import api

P = "projects/<int:project_id>/"

urlpatterns = [
    path(P + "finetunes/", api.FinetuneListView.as_view(), name="finetune-list"),
    path(P + "finetunes/<int:finetune_id>/", api.FinetuneDetailView.as_view(), name="finetune-detail"),
    path(P + "finetunes/<int:finetune_id>/cancel/", api.FinetuneCancelView.as_view(), name="finetune-cancel"),
    path(P + "finetunes/<int:finetune_id>/retry/", api.FinetuneRetryView.as_view(), name="finetune-retry"),
]
