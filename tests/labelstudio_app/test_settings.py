"""Settings behave per environment: production refuses unsafe defaults, development starts with
zero configuration even where PostgreSQL and Redis are absent."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "".join(chr(97 + (i * 7) % 26) for i in range(60))


def run(args, env, timeout=120):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL",
                                                                     "SECRET_KEY"))}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=timeout)


def test_production_refuses_to_start_without_a_real_secret_key():
    for key in ("", "short", "django-insecure-" + "x" * 60, "a" * 60):
        result = run(["manage.py", "check"], {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.prod",
                                              "SECRET_KEY": key})
        assert result.returncode != 0
        assert "SECRET_KEY must be set" in result.stderr


def test_production_passes_check_deploy():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.prod", "SECRET_KEY": GOOD_KEY,
                  "ALLOWED_HOSTS": "labels.example.org"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_cookies_and_headers_are_secure():
    code = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_SSL_REDIRECT, s.DEBUG, s.SECURE_HSTS_SECONDS > 0)")
    result = run(["-c", f"import django; django.setup(); {code}"],
                 {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.prod", "SECRET_KEY": GOOD_KEY})
    assert result.stdout.split() == ["True", "True", "True", "False", "True"], result.stderr


@pytest.mark.integration
def test_without_postgres_and_redis_dev_falls_back_to_sqlite_and_a_filesystem_broker(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.dev", "LSW_VAR_DIR": str(tmp_path),
           # Nothing listens on port 9: both probes fail as on a machine without the services.
           "LSW_LOCAL_POSTGRES_URL": "postgres://postgres@127.0.0.1:9/labelwork",
           "LSW_LOCAL_REDIS_URL": "redis://127.0.0.1:9/0"}
    migrate = run(["manage.py", "migrate", "--noinput"], env)
    assert migrate.returncode == 0, migrate.stderr
    assert "PostgreSQL not reachable" in migrate.stderr and "Redis not reachable" in migrate.stderr
    assert (tmp_path / "db.sqlite3").exists()

    # The worker is still a real process, fed through the filesystem broker.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "labelstudio_app", "worker", "--pool", "solo",
                                   "--loglevel", "INFO"], cwd=ROOT, env={**clean, **env}, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        send = run(["manage.py", "shell", "-c", "from annotations.tasks import expire_leases; expire_leases.delay()"], env)
        assert send.returncode == 0, send.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "succeeded" not in log.read_text():
            time.sleep(0.3)
        text = log.read_text()
        assert "Task annotations.expire_leases" in text and "succeeded" in text, text[-2000:]
        assert not (ROOT / "control").exists()  # broker files stay under var/
    finally:
        worker.terminate()
        worker.wait(30)


PROD_REQUESTS = r"""
import json
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings

# No collectstatic here: plain static file names instead of the production manifest.
override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}).enable()
host = {"HTTP_HOST": "labels.example.org"}
client = Client()
plain = client.get("/accounts/login/", **host)
page = client.get("/accounts/login/", secure=True, **host)
login = client.post("/accounts/login/", {"username": "prod-user", "password": "pw-for-tests-only"}, secure=True, **host)
def cookie(response, name):
    morsel = response.cookies[name]
    return {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"]), "samesite": morsel["samesite"],
            "path": morsel["path"], "domain": morsel["domain"]}
print(json.dumps({
    "plain": [plain.status_code, plain.headers.get("Location")],
    "hsts": page.headers.get("Strict-Transport-Security"),
    "csrf": cookie(page, "csrftoken"),
    "login": login.status_code,
    "session": cookie(login, "__Host-sessionid"),
    "csp": page.headers.get("Content-Security-Policy"),
}))
"""


@pytest.mark.django_db(transaction=True)
def test_production_cookies_and_hsts_on_real_responses(django_user_model):
    """A login under the production settings, through the full middleware stack: plain http is
    sent to https; HSTS with subdomains and preload; the session cookie is __Host-, Secure,
    HttpOnly, SameSite=Lax; the CSRF cookie Secure and SameSite=Lax."""
    import json

    from django.conf import settings
    from django.db import connection

    from tests.processes import database_url

    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # Production checks passwords with its own hashers (the test settings' MD5 is not among them).
    django_user_model.objects.create(username="prod-user", password=PBKDF2PasswordHasher().encode(
        "pw-for-tests-only", "salt4prodtest", iterations=1000))
    result = run(["manage.py", "shell", "-c", PROD_REQUESTS],
                 {"DJANGO_SETTINGS_MODULE": "labelstudio_app.settings.prod", "SECRET_KEY": GOOD_KEY,
                  "ALLOWED_HOSTS": "labels.example.org", "DATABASE_URL": database_url(connection.settings_dict),
                  "REDIS_URL": settings.REDIS_URL})
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://labels.example.org/accounts/login/"]
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["login"] == 302
    assert seen["session"] == {"secure": True, "httponly": True, "samesite": "Lax", "path": "/", "domain": ""}
    assert seen["csrf"]["secure"] and seen["csrf"]["samesite"] == "Lax"
    assert "script-src 'self'" in seen["csp"] and "img-src 'self' data:" in seen["csp"]
