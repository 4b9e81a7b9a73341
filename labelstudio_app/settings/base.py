"""Settings shared by every environment. Everything a deployment tunes comes from the environment."""
from __future__ import annotations

from pathlib import Path

import environ
from kombu import Exchange, Queue

from .services import notice, reachable

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = Path(environ.Env().str("LSW_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "annotations",
    "models_service",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from gunicorn, same origin, so the CSP can stay 'self'-only.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "labelstudio_app.request_guards.RefuseNulInQuery",
    # A view that lost the database answers 503 with a page that says the text is kept (not a 500).
    "labelstudio_app.database_errors.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "labelstudio_app.urls"
WSGI_APPLICATION = "labelstudio_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------------
DEFAULT_POSTGRES_URL = env.str("LSW_LOCAL_POSTGRES_URL", default="postgres://postgres@127.0.0.1:5432/labelwork")
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
elif reachable(DEFAULT_POSTGRES_URL, 5432):
    DATABASES = {"default": env.db_url_config(DEFAULT_POSTGRES_URL)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    notice(f"PostgreSQL not reachable on 127.0.0.1:5432 - using SQLite at {VAR_DIR / 'db.sqlite3'}")
    DATABASES = {"default": env.db_url_config(f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Persistent connections let psycopg 3 prepare the hot assignment statements (+60-80 %
    # throughput measured in shared/notes/postgres-assignment.md).
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # Django's psycopg 3 backend binds ORM queries client-side (never prepared) and turns
    # preparation off for the whole connection unless OPTIONS names a threshold. With one set, the
    # hot assignment statements, run on a server-binding cursor with prepare=True
    # (annotations/services/prepared.py), skip parsing and planning: PostgreSQL CPU per next+submit
    # fell from 7.5 to 4.3 ms (docs/benchmarks.md). ORM queries are unaffected. Behind a pooler in
    # transaction mode that cannot keep prepared statements, set DB_PREPARE_THRESHOLD= (empty).
    _prepare = env.str("DB_PREPARE_THRESHOLD", default="5")
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", int(_prepare) if _prepare else None)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, cache, celery -----------------------------------------------------------------------
DEFAULT_REDIS_URL = env.str("LSW_LOCAL_REDIS_URL", default="redis://127.0.0.1:6379/0")
REDIS_URL = env.str("REDIS_URL", default="")
if not REDIS_URL and reachable(DEFAULT_REDIS_URL, 6379):
    REDIS_URL = DEFAULT_REDIS_URL

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
else:
    notice("Redis not reachable on 127.0.0.1:6379 - Celery uses the filesystem broker under var/broker")
    broker_dir = VAR_DIR / "broker"
    for sub in ("in", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(broker_dir / "in"),
        "data_folder_out": str(broker_dir / "in"),
        "processed_folder": str(broker_dir / "processed"),
        "control_folder": str(broker_dir / "control"),  # kombu's default is the working directory
    }
    CELERY_RESULT_BACKEND = None

# A killed worker must not lose a job: acknowledge after the task ran, re-queue when the worker
# dies, and never hold more than one unstarted job per process.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The queue jobs go to and workers take from. A second deployment sharing one Redis database (the
# flywheel run beside a test session's worker) names its own, so neither worker takes the other's jobs.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Background model work (a critique per submission, advisory and many) has a queue of its own that
# every worker takes from only when the default queue is empty: a burst of submissions must not
# hold an export, a finetune or an eval run someone is waiting for behind a hundred critiques.
# Redis's BRPOP takes from the first non-empty key, and "priority" keeps the queues in this order
# (kombu's default rotates them). A worker started without -Q consumes both.
CELERY_BACKGROUND_QUEUE = env.str("CELERY_BACKGROUND_QUEUE", default=f"{CELERY_TASK_DEFAULT_QUEUE}.background")
# Each queue its own exchange and key: left out, Celery binds both to the default key and every
# default job would be copied into the background queue as well (tests/integration/test_queues.py).
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name)
                           for name in (CELERY_TASK_DEFAULT_QUEUE, CELERY_BACKGROUND_QUEUE))
CELERY_TASK_ROUTES = {"models_service.critique_submission": {"queue": CELERY_BACKGROUND_QUEUE}}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"queue_order_strategy": "priority"}
# A lost broker connection does not stop running jobs (a finetune would start over): they finish,
# and their acknowledgement to the dead channel is logged and dropped (labelstudio_app/broker.py).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Faults (annotations.recovery): a job that is running while no worker holds its run lock was
# interrupted and is queued again at once; one pending for RECOVER_PENDING_AFTER_S lost its message
# (Redis restarted or was down when it was queued) and is queued again. Swept on every worker start
# and every RECOVERY_INTERVAL_S. The broker's own redelivery of a killed worker's message waits for
# the visibility timeout (kept at kombu's hour: long jobs must not be delivered twice while they run).
RECOVERY_INTERVAL_S = env.float("RECOVERY_INTERVAL_S", default=60.0)
RECOVER_PENDING_AFTER_S = env.int("RECOVER_PENDING_AFTER_S", default=300)
RECOVERY_MAX_ATTEMPTS = env.int("RECOVERY_MAX_ATTEMPTS", default=5)
# The sweep looks for labelled submissions left without a critique among this many newest ones.
CRITIQUE_RECOVERY_WINDOW = env.int("CRITIQUE_RECOVERY_WINDOW", default=2000)
CELERY_BEAT_SCHEDULE = {
    "expire-leases": {"task": "annotations.expire_leases", "schedule": 30.0},
    # Folds the trigger-appended task-count deltas so counting stays a few rows per project.
    "compact-task-counts": {"task": "annotations.compact_task_counts", "schedule": 60.0},
    "recover-interrupted-work": {"task": "annotations.recover_interrupted_work", "schedule": RECOVERY_INTERVAL_S},
}

# --- auth, i18n, static -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))
MEDIA_URL = "/media/"

# --- security headers ---------------------------------------------------------------------------
# Task text is hostile by assumption: nothing inline, nothing from another host, images only from
# ourselves or data: URLs (a markdown image pointing elsewhere must not leak a request).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# The pages' scripts read the CSRF cookie to send it back as a header (common.js), so it cannot be
# HttpOnly; SameSite and the token check are what protect it.
CSRF_COOKIE_SAMESITE = "Lax"

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotations.api.authentication.PreparedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: a view opens itself up explicitly.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "annotations.api.errors.exception_handler",
    # Proxies in front of us that append to X-Forwarded-For; 0: the client is REMOTE_ADDR and a
    # forged X-Forwarded-For changes nothing (DRF's default would key throttles on the header).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("THROTTLE_LOGIN", default="10/min"),
        "token": env.str("THROTTLE_TOKEN", default="10/min"),
        # Misbehaviour reports: per ingestion token, and per client address before the token is
        # even looked at (annotations/feedback/auth.py).
        "reports": env.str("THROTTLE_REPORTS", default="120/min"),
        "reports-address": env.str("THROTTLE_REPORTS_ADDRESS", default="600/min"),
    },
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Labelwork API",
    "DESCRIPTION": "Projects, instructions, tasks, leases and submissions for LLM finetuning data.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files: no CDN, and it passes a 'self'-only CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"TaskKindEnum": "annotations.models.TaskKind", "ImportFormatEnum": ["jsonl", "csv"],
                            "LabellingKindEnum": [("demonstration", "Demonstration"), ("comparison", "Comparison")],
                            "ModelJobKindEnum": "models_service.models.ModelJob.Kind",
                            "ReportStatusEnum": "annotations.feedback.models.MisbehaviourReport.Status",
                            "ReportSourceEnum": "annotations.feedback.models.MisbehaviourReport.Source",
                            # pending/done/failed: a red-team turn shares the critique's set (and name)
                            "CritiqueOutStatusEnum": "models_service.models.Critique.Status",
                            "SourceEnum": "annotations.models.CandidateReply.Source",
                            "RedTeamTurnRoleEnum": "annotations.feedback.models.TURN_ROLES",
                            "MessageRoleEnum": "annotations.conversations.ROLE_CHOICES",
                            "RoleEnum": "annotations.models.Role",
                            "QualityRuleActionEnum": "annotations.quality.models.QualityRule.Action",
                            "QualityRuleMetricEnum": "annotations.quality.models.QualityRule.Metric"},
}

# --- product limits -----------------------------------------------------------------------------
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=512 * 1024 * 1024)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=2_000_000)
IMPORT_MAX_FIELD_CHARS = env.int("IMPORT_MAX_FIELD_CHARS", default=32_000)
IMPORT_MAX_ERRORS_REPORTED = env.int("IMPORT_MAX_ERRORS_REPORTED", default=200)
# Import from URL (annotations.url_fetch): one deadline for the whole fetch, redirects followed by
# hand and checked at every hop, only these ports. The allow-list opens otherwise refused
# networks (loopback, private) for tests and local development; production forces it empty.
IMPORT_URL_TIMEOUT = env.float("IMPORT_URL_TIMEOUT", default=60.0)
IMPORT_URL_MAX_REDIRECTS = env.int("IMPORT_URL_MAX_REDIRECTS", default=5)
IMPORT_URL_PORTS = [int(p) for p in env.list("IMPORT_URL_PORTS", default=["80", "443", "8080", "8443"])]
IMPORT_URL_ALLOW_NETWORKS = env.list("IMPORT_URL_ALLOW_NETWORKS", default=[])
LEASE_RECLAIM_BATCH = env.int("LEASE_RECLAIM_BATCH", default=500)
# Data-attack screening (annotations.screening): after every import, while building every snapshot.
SCREENING_ON_IMPORT = env.bool("SCREENING_ON_IMPORT", default=True)
SCREENING_ON_SNAPSHOT = env.bool("SCREENING_ON_SNAPSHOT", default=True)
# Tasks one scan reads at most (bench/screening.py: ~100k items in well under a minute); beyond it
# the scan covers the first ones and says so.
SCREENING_MAX_ITEMS = env.int("SCREENING_MAX_ITEMS", default=200_000)

# --- deployment feedback and red-teaming (annotations/feedback, models_service/redteam.py) -------
FEEDBACK_MAX_BODY_BYTES = env.int("FEEDBACK_MAX_BODY_BYTES", default=2 * 1024 * 1024)
FEEDBACK_MAX_REPORTS_PER_REQUEST = env.int("FEEDBACK_MAX_REPORTS_PER_REQUEST", default=50)
FEEDBACK_MAX_MESSAGE_CHARS = env.int("FEEDBACK_MAX_MESSAGE_CHARS", default=IMPORT_MAX_FIELD_CHARS)
FEEDBACK_MAX_CONVERSATION_CHARS = env.int("FEEDBACK_MAX_CONVERSATION_CHARS", default=200_000)
FEEDBACK_MAX_TURNS = env.int("FEEDBACK_MAX_TURNS", default=100)
FEEDBACK_MAX_DESCRIPTION_CHARS = env.int("FEEDBACK_MAX_DESCRIPTION_CHARS", default=5_000)
FEEDBACK_MAX_METADATA_BYTES = env.int("FEEDBACK_MAX_METADATA_BYTES", default=4_096)
# A red-team chat is bounded so it fits the model's context (MODEL_MAX_CONTEXT tokens) with room
# for the reply, and so one session cannot hold the model server for long.
RED_TEAM_MAX_USER_TURNS = env.int("RED_TEAM_MAX_USER_TURNS", default=12)
RED_TEAM_MAX_MESSAGE_CHARS = env.int("RED_TEAM_MAX_MESSAGE_CHARS", default=4_000)
RED_TEAM_MAX_CONVERSATION_CHARS = env.int("RED_TEAM_MAX_CONVERSATION_CHARS", default=8_000)
RED_TEAM_MAX_TOKENS = env.int("RED_TEAM_MAX_TOKENS", default=256)
RED_TEAM_TEMPERATURE = env.float("RED_TEAM_TEMPERATURE", default=0.7)
# Seconds one request to the model server may take (the worker gives up after two attempts), and
# after which a turn still pending may be asked for again (a lost job, a worker that was down).
RED_TEAM_TURN_TIMEOUT = env.int("RED_TEAM_TURN_TIMEOUT", default=60)
RED_TEAM_TURN_STALE_SECONDS = env.int("RED_TEAM_TURN_STALE_SECONDS", default=150)

# --- model side (read by models_service) --------------------------------------------------------
MODEL_BACKEND = env.str("MODEL_BACKEND", default="vllm")  # vllm | transformers | openai
MODEL_BASE_URL = env.str("MODEL_BASE_URL", default="http://127.0.0.1:8001/v1")
MODEL_API_KEY = env.str("MODEL_API_KEY", default="")
MODEL_NAME = env.str("MODEL_NAME", default="smollm2-135m-instruct")
MODEL_PATH = env.str("MODEL_PATH", default="")
LSW_CACHE = env.str("LSW_CACHE", default=str(Path.home() / ".cache" / "labelwork"))
MODEL_PORT = env.int("MODEL_PORT", default=8001)
MODEL_MAX_CONTEXT = env.int("MODEL_MAX_CONTEXT", default=4096)
# Requests in flight to the model server from one drafting job: enough for vLLM to batch.
DRAFT_CONCURRENCY = env.int("DRAFT_CONCURRENCY", default=16)
DRAFT_TEMPERATURE = env.float("DRAFT_TEMPERATURE", default=0.8)
DRAFT_TOP_P = env.float("DRAFT_TOP_P", default=0.95)
DRAFT_MAX_TOKENS = env.int("DRAFT_MAX_TOKENS", default=256)
CRITIQUE_ON_SUBMIT = env.bool("CRITIQUE_ON_SUBMIT", default=True)
CRITIQUE_ATTEMPTS = env.int("CRITIQUE_ATTEMPTS", default=3)
CRITIQUE_MAX_TOKENS = env.int("CRITIQUE_MAX_TOKENS", default=640)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # one line per model request drowns the worker log
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
