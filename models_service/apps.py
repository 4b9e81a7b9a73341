from django.apps import AppConfig


class ModelsServiceConfig(AppConfig):
    name = "models_service"
    verbose_name = "Models"

    def ready(self) -> None:
        from annotations.signals import import_finished, red_team_turn_requested, submission_created

        submission_created.connect(_critique_new_submission, dispatch_uid="models_service.critique")
        import_finished.connect(_draft_new_import, dispatch_uid="models_service.draft_import")
        red_team_turn_requested.connect(_answer_red_team_turn, dispatch_uid="models_service.red_team_turn")
        _register_recovery()


def _register_recovery() -> None:
    """Every model job is swept for interruptions like imports and snapshots
    (annotations.recovery): drafting, judging, eval generation and arena judging jobs, finetunes,
    eval-set builds, critiques and red-team replies."""
    from django.utils import timezone

    from annotations import recovery
    from annotations.models import RedTeamTurn

    from . import locks
    from .evaluation.models import EvalSet
    from .finetune.service import LOCK as FINETUNE_LOCK
    from .models import Critique, FinetuneJob, ModelJob

    def fail_model_job(pk, reason):
        ModelJob.objects.filter(pk=pk).update(status=ModelJob.Status.FAILED, error=reason, finished_at=timezone.now())

    def fail_finetune(pk, reason):
        FinetuneJob.objects.filter(pk=pk).update(status=FinetuneJob.Status.FAILED, error=reason, child_pid=None,
                                                 finished_at=timezone.now())

    def fail_eval_job(pk, reason):
        from .evaluation.runs import advance_run

        fail_model_job(pk, reason)
        run_id = (ModelJob.objects.filter(pk=pk).values_list("params", flat=True).first() or {}).get("eval_run")
        if run_id:
            advance_run(run_id=run_id)  # a given-up generation job fails its run; a judge leaves it done

    def fail_eval_set(pk, reason):
        EvalSet.objects.filter(pk=pk).update(status=EvalSet.Status.FAILED, error=reason, finished_at=timezone.now())

    def fail_critique(pk, reason):
        Critique.objects.filter(pk=pk, status=Critique.Status.PENDING).update(
            status=Critique.Status.FAILED, error=reason, finished_at=timezone.now())

    def fail_red_team_turn(pk, reason):
        RedTeamTurn.objects.filter(pk=pk, status=RedTeamTurn.Status.PENDING).update(
            status=RedTeamTurn.Status.FAILED, error=reason, completed_at=timezone.now())

    for kind, task, give_up in (
            (ModelJob.Kind.DRAFTING, "models_service.run_drafting_job", fail_model_job),
            (ModelJob.Kind.JUDGING, "models_service.run_judging_job", fail_model_job),
            (ModelJob.Kind.EVAL_GENERATION, "models_service.run_eval_generation_job", fail_eval_job),
            (ModelJob.Kind.ARENA_JUDGING, "models_service.run_arena_judging_job", fail_eval_job)):
        recovery.register(recovery.JobKind(locks.MODEL_JOB, ModelJob, task, give_up, only={"kind": kind}))
    recovery.register(recovery.JobKind(FINETUNE_LOCK, FinetuneJob, "models_service.run_finetune", fail_finetune))
    recovery.register(recovery.JobKind(locks.EVAL_SET, EvalSet, "models_service.build_eval_set", fail_eval_set))
    # No running state: a pending row with a free lock and the run's mark left in the cache was interrupted.
    recovery.register(recovery.JobKind(locks.CRITIQUE, Critique, "models_service.critique_submission", fail_critique,
                                       running=None, arg="submission_id", missing=_submissions_without_critique))
    recovery.register(recovery.JobKind(locks.RED_TEAM_TURN, RedTeamTurn, "models_service.red_team_turn",
                                       fail_red_team_turn, only={"role": "assistant"}, running=None,
                                       since="requested_at"))


def _submissions_without_critique(cutoff) -> list[int]:
    """Recent labelled submissions, older than ``cutoff``, that have no critique row at all: the
    message was lost before a worker began (a Redis restart, or Redis down at submit). Only the
    newest ``CRITIQUE_RECOVERY_WINDOW`` submissions are looked at (a primary-key range, so the sweep
    stays cheap on a large table; nothing is added to the submit itself)."""
    from django.conf import settings
    from django.db.models import Exists, OuterRef

    from annotations.models import LABELLING_KINDS, ModelVersion, Submission

    from .models import Critique

    if not settings.CRITIQUE_ON_SUBMIT:
        return []
    window = settings.CRITIQUE_RECOVERY_WINDOW
    floor = next(iter(Submission.objects.order_by("-pk").values_list("pk", flat=True)[window - 1:window]), 0)
    version = ModelVersion.objects.filter(name=settings.MODEL_NAME).first()
    rows = Submission.objects.filter(pk__gte=floor, kind__in=LABELLING_KINDS, created_at__lte=cutoff)
    if version is not None:
        rows = rows.filter(~Exists(Critique.objects.filter(submission=OuterRef("pk"), model_version=version)))
    return list(rows.order_by("pk").values_list("pk", flat=True)[:200])


def _critique_new_submission(sender, submission_id: int, kind: str | None = None, **kwargs) -> None:
    # The signal is sent after the submission's transaction committed, so the worker finds the row.
    from django.conf import settings

    if settings.CRITIQUE_ON_SUBMIT:
        from annotations.models import LABELLING_KINDS, Submission
        from annotations.queueing import enqueue

        from .tasks import critique_submission

        # A red-team outcome is not a reply or a ranking: there is nothing to critique.
        # The sender says the kind when it knows it (every submit does): no query on the hot path.
        if kind is not None:
            if kind not in LABELLING_KINDS:
                return
        elif not Submission.objects.filter(pk=submission_id, kind__in=LABELLING_KINDS).exists():
            return

        # The submission is committed: a broker outage must not turn its response into a 500 (the
        # recovery sweep finds a submission left without its critique).
        enqueue(critique_submission, submission_id)


def _draft_new_import(sender, batch_id: int, **kwargs) -> None:
    """Imported prompts get model drafts right away, so annotators start from them."""
    from annotations.models import ImportBatch, TaskKind

    from .drafting import create_drafting_job

    batch = ImportBatch.objects.select_related("project").get(pk=batch_id)
    project = batch.project
    if project.draft_on_import and project.drafts_n > 0 and batch.tasks.filter(kind=TaskKind.DEMONSTRATION).exists():
        create_drafting_job(project=project, created_by=batch.created_by, model_version=project.draft_model,
                            import_batch=batch.pk)


def _answer_red_team_turn(sender, turn_id: int, **kwargs) -> None:
    # Sent on commit of the pending turn: the worker finds it.
    from annotations.queueing import enqueue

    from .tasks import red_team_turn

    # The pending turn is committed: with the broker down the sweep queues it later.
    enqueue(red_team_turn, turn_id)
