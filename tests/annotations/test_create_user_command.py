"""manage.py create_user: logins for scripts (make flywheel) and first set-ups, passwords from stdin
or generated and printed once, all or nothing."""
import io
import sys

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db
User = get_user_model()


def run(*args, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("create_user", *args, stdout=out, stderr=err)
    finally:
        sys.stdin = old
    return out.getvalue(), err.getvalue()


def test_passwords_from_stdin_one_line_per_user_and_nothing_printed():
    out, err = run("ann-1", "ann-2", "--password-stdin", stdin="first-Secret-9x\nsecond-Secret-9y\n")
    assert out == ""  # nothing secret on stdout
    assert authenticate(username="ann-1", password="first-Secret-9x")
    assert authenticate(username="ann-2", password="second-Secret-9y")
    assert not User.objects.get(username="ann-1").is_staff


def test_a_generated_password_is_printed_once_and_works():
    out, err = run("boss", "--staff")
    password = out.strip()
    assert len(password) >= 16 and "shown once" in err
    user = authenticate(username="boss", password=password)
    assert user is not None and user.is_staff and not user.is_superuser


def test_an_existing_user_is_refused_unless_exist_ok_and_nothing_half_made():
    run("taken", "--password-stdin", stdin="first-Secret-9x\n")
    with pytest.raises(CommandError, match="exists"):
        run("fresh", "taken", "--password-stdin", stdin="other-Secret-9z\nother-Secret-9z\n")
    assert not User.objects.filter(username="fresh").exists()  # all or nothing
    run("taken", "--password-stdin", "--exist-ok", stdin="changed-Secret-9q\n")
    assert authenticate(username="taken", password="changed-Secret-9q")


@pytest.mark.parametrize("args, stdin, message", [
    (("one", "--password-stdin"), "", "No password"),
    (("one", "two", "--password-stdin"), "only-One-Line-9x\n", "No password on stdin for 'two'"),
    (("bad name!",), "", "Invalid username"),
    (("dup", "dup"), "", "twice"),
    (("weak", "--password-stdin"), "123\n", "refused"),
])
def test_bad_input_is_an_error(args, stdin, message):
    with pytest.raises(CommandError, match=message):
        run(*args, stdin=stdin)
    assert not User.objects.exists()
