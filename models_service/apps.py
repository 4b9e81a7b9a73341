from django.apps import AppConfig


class ModelsServiceConfig(AppConfig):
    name = "models_service"
    verbose_name = "Models"

    def ready(self) -> None:
        from annotations.signals import submission_created

        submission_created.connect(_critique_new_submission, dispatch_uid="models_service.critique")


def _critique_new_submission(sender, submission_id: int, **kwargs) -> None:
    # The signal is sent after the submission's transaction committed, so the worker finds the row.
    from django.conf import settings

    if settings.CRITIQUE_ON_SUBMIT:
        from .tasks import critique_submission

        critique_submission.delay(submission_id)
