"""Draft replies for a project's prompts with the configured model, as a Celery job, and follow it."""
import time

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Project
from models_service.backends import backend_for, default_model_version
from models_service.drafting import create_drafting_job
from models_service.models import ModelJob


class Command(BaseCommand):
    help = "Queue a drafting job (n drafts per demonstration prompt) and print its progress until it ends."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--project", type=int)
        target.add_argument("--demo", action="store_true", help="The demo project made by load_demo.")
        parser.add_argument("--n", type=int)
        parser.add_argument("--max-tokens", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--wait-for-server", type=float, default=0, metavar="SECONDS",
                            help="First wait up to this long for the model server to answer /health.")
        parser.add_argument("--no-follow", action="store_true", help="Queue the job and return.")

    def handle(self, *args, project=None, demo=False, n=None, max_tokens=None, temperature=None,
               wait_for_server=0, no_follow=False, **options):
        from annotations.management.commands.load_demo import PROJECT_NAME

        target = Project.objects.filter(name=PROJECT_NAME).first() if demo else Project.objects.filter(
            pk=project).first()
        if target is None:
            raise CommandError("No such project.")
        version = target.draft_model or default_model_version()  # the project's drafting model, maybe finetuned
        backend = backend_for(version)
        if wait_for_server and hasattr(backend, "client"):
            deadline = time.monotonic() + wait_for_server
            while not backend.client.health():
                if time.monotonic() > deadline:
                    raise CommandError(f"The model server at {backend.client.base_url} did not answer in time.")
                time.sleep(3)
        params = {k: v for k, v in {"n": n, "max_tokens": max_tokens, "temperature": temperature}.items()
                  if v is not None}
        job = create_drafting_job(project=target, model_version=version, **params)
        self.stdout.write(f"Drafting job #{job.pk} queued for project #{target.pk} with {version.name}.")
        if no_follow:
            return
        while True:
            job.refresh_from_db()
            self.stdout.write(f"  {job.status}: {job.done}/{job.total} done, {job.failed} failed, "
                              f"{job.skipped} already drafted")
            if job.status in (ModelJob.Status.DONE, ModelJob.Status.FAILED, ModelJob.Status.CANCELLED):
                break
            time.sleep(5)
        if job.error:
            self.stderr.write(job.error)
