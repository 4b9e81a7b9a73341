from django.core.management.utils import get_random_secret_key

from .base import *  # noqa: F401,F403
from .base import SECRET_KEY, VAR_DIR, env

DEBUG = env.bool("DEBUG", default=True)
if not SECRET_KEY:
    # A per-checkout key kept under var/ so sessions survive restarts; never committed.
    key_file = VAR_DIR / "secret_key"
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
