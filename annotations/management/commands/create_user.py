"""Create logins for scripts and first set-ups (the API has no sign-up: staff add people to projects
by username). Passwords are read from stdin, one line per user (``--password-stdin``; never from the
command line, where other users of the machine could read them in the process list), or generated
and printed once, one line per user.

    python manage.py create_user alice --staff                      # prints a random password
    printf '%s\n' "$PW1" "$PW2" | python manage.py create_user ann1 ann2 --password-stdin
"""
import secrets
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction


class Command(BaseCommand):
    help = ("Create a user. --staff lets them create projects (staff are not project admins anywhere until "
            "they create or join a project). The password comes from stdin with --password-stdin, or a random "
            "one is generated and printed once.")

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="+", metavar="username")
        parser.add_argument("--email", default="")
        parser.add_argument("--staff", action="store_true", help="May create projects (is_staff).")
        parser.add_argument("--password-stdin", action="store_true",
                            help="Read the password from the first line of stdin.")
        parser.add_argument("--exist-ok", action="store_true",
                            help="If the user exists, set the password (and --staff) instead of failing.")

    def handle(self, *args, usernames, email, staff, password_stdin, exist_ok, **options):
        User = get_user_model()
        if len(set(usernames)) != len(usernames):
            raise CommandError("A username is given twice.")
        if email and len(usernames) > 1:
            raise CommandError("--email goes with one username.")
        passwords = []
        for username in usernames:
            try:
                User.username_validator(username)
            except ValidationError as exc:
                raise CommandError(f"Invalid username {username!r}: {' '.join(exc.messages)}") from None
            if password_stdin:
                password = sys.stdin.readline().rstrip("\n")
                if not password:
                    raise CommandError(f"No password on stdin for {username!r} (one line per user).")
            else:
                password = secrets.token_urlsafe(16)
            passwords.append(password)
        with transaction.atomic():  # all or none
            for username, password in zip(usernames, passwords, strict=True):
                user = User.objects.select_for_update().filter(username=username).first()
                if user is not None and not exist_ok:
                    raise CommandError(f"User {username!r} exists (use --exist-ok to set its password).")
                user = user or User(username=username, email=email)
                try:
                    validate_password(password, user)
                except ValidationError as exc:
                    raise CommandError(f"Password for {username!r} refused: {' '.join(exc.messages)}") from None
                user.set_password(password)
                user.is_staff = staff or user.is_staff
                user.save()
                self.stderr.write(f"user {user.pk} {username}{' (staff)' if user.is_staff else ''}")
        if not password_stdin:
            self.stderr.write("passwords, shown once, one line per user:")
            for password in passwords:
                self.stdout.write(password)
