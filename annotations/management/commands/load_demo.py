"""Idempotent demo set-up for the README run command: users, a project, instructions, tasks."""
import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotations.models import Project, Role
from annotations.services.imports import import_file
from annotations.services.instructions import publish_instructions
from annotations.services.projects import create_project, set_member

DEMO_DIR = Path(settings.BASE_DIR) / "demo"
PROJECT_NAME = "Demo: helpful, truthful, harmless assistant"
USERS = {"demo-admin": Role.ADMIN, "demo-annotator": Role.ANNOTATOR, "demo-reviewer": Role.REVIEWER,
         "demo-engineer": Role.ENGINEER}


class Command(BaseCommand):
    help = "Create the demo project and users (once) and print their credentials."

    def handle(self, *args, **options):
        creds = self._credentials()
        with transaction.atomic():
            users = {name: self._user(name, creds[name], staff=role == Role.ADMIN) for name, role in USERS.items()}
            project = Project.objects.filter(name=PROJECT_NAME).first()
            if project is None:
                project = create_project(name=PROJECT_NAME, created_by=users["demo-admin"], overlap=1,
                                         comparison_k=3, description="Prompts from shared/data/demo_prompts.jsonl.")
                publish_instructions(project=project, body=(DEMO_DIR / "instructions.md").read_text(),
                                     title="Example instructions", published_by=users["demo-admin"])
            for name, role in USERS.items():
                set_member(project=project, user=users[name], role=role)
            for file, kind in (("prompts.jsonl", "demonstration"), ("comparisons.jsonl", "comparison")):
                with (DEMO_DIR / file).open("rb") as stream:
                    result = import_file(project=project, stream=stream, fmt="jsonl", default_kind=kind)
                if not result.ok:
                    raise SystemExit(f"demo/{file} is invalid: {result.errors}")
        self.stdout.write(self.style.SUCCESS(f"Demo project #{project.pk}: {project.name}"))
        for name, role in USERS.items():
            self.stdout.write(f"  {role:<10} login: {name:<15} password: {creds[name]}")

    def _credentials(self) -> dict:
        # Random per machine, kept under var/ (never in the repository) so they stay stable across runs.
        path = Path(settings.VAR_DIR) / "demo_credentials.json"
        creds = json.loads(path.read_text()) if path.exists() else {}
        for name in USERS:
            creds.setdefault(name, secrets.token_urlsafe(12))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(creds, indent=2))
        path.chmod(0o600)
        return creds

    def _user(self, name, password, staff):
        user, _ = get_user_model().objects.get_or_create(username=name)
        user.set_password(password)
        user.is_staff = user.is_superuser = staff
        user.save()
        return user
