from django.apps import AppConfig


class ModelsServiceConfig(AppConfig):
    name = "models_service"
    verbose_name = "Models"

    def ready(self) -> None:
        from annotations.signals import import_finished, submission_created

        submission_created.connect(_critique_new_submission, dispatch_uid="models_service.critique")
        import_finished.connect(_draft_new_import, dispatch_uid="models_service.draft_import")


def _critique_new_submission(sender, submission_id: int, **kwargs) -> None:
    # The signal is sent after the submission's transaction committed, so the worker finds the row.
    from django.conf import settings

    if settings.CRITIQUE_ON_SUBMIT:
        from .tasks import critique_submission

        critique_submission.delay(submission_id)


def _draft_new_import(sender, batch_id: int, **kwargs) -> None:
    """Imported prompts get model drafts right away, so annotators start from them."""
    from annotations.models import ImportBatch, TaskKind

    from .drafting import create_drafting_job

    batch = ImportBatch.objects.select_related("project").get(pk=batch_id)
    project = batch.project
    if project.draft_on_import and project.drafts_n > 0 and batch.tasks.filter(kind=TaskKind.DEMONSTRATION).exists():
        create_drafting_job(project=project, created_by=batch.created_by, model_version=project.draft_model,
                            import_batch=batch.pk)
