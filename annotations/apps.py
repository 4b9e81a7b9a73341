from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Labelling"

    def ready(self) -> None:
        from django.utils import timezone

        from . import recovery
        from .models import DatasetSnapshot, ImportBatch

        def fail_import(pk, reason):
            ImportBatch.objects.filter(pk=pk).update(status=ImportBatch.Status.FAILED, error_count=1,
                                                     errors=[{"line": 0, "reason": reason}],
                                                     finished_at=timezone.now())

        def fail_snapshot(pk, reason):
            DatasetSnapshot.objects.filter(pk=pk).update(status=DatasetSnapshot.Status.FAILED, error=reason,
                                                         finished_at=timezone.now())

        recovery.register(recovery.JobKind("import", ImportBatch, "annotations.process_import", fail_import))
        recovery.register(recovery.JobKind("snapshot", DatasetSnapshot, "annotations.build_snapshot", fail_snapshot))
