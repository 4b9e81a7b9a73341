from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotations.errors import ImportRejected
from annotations.models import LABELLING_KINDS, Project, TaskKind
from annotations.services.imports import import_file


class Command(BaseCommand):
    help = "Import prompts (and optional candidate replies) from a JSONL or CSV file, all or nothing."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Project id.")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["jsonl", "csv"], help="Default: from the file name.")
        parser.add_argument("--kind", choices=[k.value for k in LABELLING_KINDS], default=TaskKind.DEMONSTRATION,
                            help="Kind for rows that do not say.")

    def handle(self, *args, project, file, format, kind, **options):
        target = Project.objects.filter(pk=project).first()
        if target is None:
            raise CommandError(f"No project with id {project}.")
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        fmt = format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")
        try:
            with file.open("rb") as stream:
                result = import_file(project=target, stream=stream, fmt=fmt, default_kind=kind,
                                     size=file.stat().st_size)
        except ImportRejected as exc:
            raise CommandError(exc.message) from None
        if not result.ok:
            for error in result.errors:
                self.stderr.write(f"{file}:{error['line']}: {error['reason']}")
            if result.error_count > len(result.errors):
                self.stderr.write(f"... and {result.error_count - len(result.errors)} more")
            raise CommandError(f"{result.error_count} bad row(s); nothing was imported.")
        self.stdout.write(f"{result.rows_total} rows: {result.tasks_created} tasks created, "
                          f"{result.duplicates} duplicates skipped.")
