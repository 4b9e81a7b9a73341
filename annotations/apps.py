from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    name = "annotations"
    verbose_name = "Labelling"

    def ready(self) -> None:
        from django.utils import timezone

        from . import recovery
        from .models import DataScan, DatasetSnapshot, ImportBatch

        def fail_import(pk, reason):
            ImportBatch.objects.filter(pk=pk).update(status=ImportBatch.Status.FAILED, error_count=1,
                                                     errors=[{"line": 0, "reason": reason}],
                                                     finished_at=timezone.now())

        def fail_snapshot(pk, reason):
            # only a pending or running one: a snapshot cancelled meanwhile stays cancelled
            DatasetSnapshot.objects.filter(pk=pk, status__in=DatasetSnapshot.ACTIVE).update(
                status=DatasetSnapshot.Status.FAILED, error=reason, finished_at=timezone.now())

        def fail_scan(pk, reason):
            DataScan.objects.filter(pk=pk).update(status=DataScan.Status.FAILED, error=reason,
                                                  finished_at=timezone.now())

        recovery.register(recovery.JobKind("import", ImportBatch, "annotations.process_import", fail_import))
        # Import scans (a snapshot's scan runs inside its build, under the snapshot's lock).
        recovery.register(recovery.JobKind("scan_import", DataScan, "annotations.scan_import", fail_scan,
                                           only={"import_batch__isnull": False}, arg="import_batch_id"))
        recovery.register(recovery.JobKind("snapshot", DatasetSnapshot, "annotations.build_snapshot", fail_snapshot))
