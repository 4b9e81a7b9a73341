"""Tests always run against the real PostgreSQL and Redis - never SQLite, never an eager queue."""
from .base import *  # noqa: F401,F403
from .base import env

DEBUG = False
SECRET_KEY = "test-only-not-a-secret"  # noqa: S105 - the test settings never serve anyone

DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/labelwork")}
DATABASES["default"]["CONN_MAX_AGE"] = 0
# The same preparation as base settings, so tests run the prepared hot statements the way production does.
DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 5}
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# As production has it (base.py): the default queue before the background one.
CELERY_BROKER_TRANSPORT_OPTIONS = {"queue_order_strategy": "priority"}
CELERY_TASK_ALWAYS_EAGER = False

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = env.str("MEDIA_ROOT", default="/tmp/labelwork-test-media")
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {  # noqa: F405
    "login": "1000/min", "token": "1000/min", "reports": "1000/min", "reports-address": "1000/min"}}

# Tests render templates without running collectstatic first.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = None

# Submissions in unrelated tests must not queue critiques; the model tests turn it on.
CRITIQUE_ON_SUBMIT = False

# The session's vLLM server (tests/integration/test_vllm_models.py) listens here; the Celery
# worker process reads the same settings.
MODEL_BACKEND = "vllm"
MODEL_BASE_URL = env.str("TEST_MODEL_BASE_URL", default="http://127.0.0.1:8011/v1")
MODEL_NAME = env.str("TEST_MODEL_NAME", default="smollm2-135m-instruct")
MODEL_PATH = ""

# Red-team turns in the model tests: short replies, and room for a CPU server shared by a whole
# test run (one 64-token reply took 116 s on the 2-core CI machine under load).
RED_TEAM_MAX_TOKENS = 48
RED_TEAM_TURN_TIMEOUT = env.int("RED_TEAM_TURN_TIMEOUT", default=240)
