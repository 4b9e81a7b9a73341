from django.core.management.base import BaseCommand, CommandError

from annotations.errors import DomainError
from annotations.feedback.tokens import create_report_token, revoke_report_token
from annotations.models import Project


class Command(BaseCommand):
    help = ("Create a report ingestion token for a project (printed once; only its hash is stored), "
            "or revoke one. For scripts and deployments; admins can do the same on the project's pages.")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Project id.")
        parser.add_argument("--name", help="Which deployment uses the new token.")
        parser.add_argument("--revoke", type=int, metavar="TOKEN_ID", help="Revoke this token instead.")

    def handle(self, *args, project, name, revoke, **options):
        target = Project.objects.filter(pk=project).select_related("created_by").first()
        if target is None:
            raise CommandError(f"No project {project}.")
        try:
            if revoke is not None:
                token = revoke_report_token(project=target, token_id=revoke, revoked_by=None)
                self.stdout.write(f"revoked {token.prefix}… ({token.name})")
                return
            if not name:
                raise CommandError("Give --name (or --revoke TOKEN_ID).")
            issued = create_report_token(project=target, name=name, created_by=target.created_by)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"token {issued.token.pk} for project {target.pk}; shown once, store it now:")
        self.stdout.write(issued.secret)
