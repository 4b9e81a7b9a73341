"""The model's side of a red-team chat: generate the reply of one pending turn.

Runs in a Celery worker, never in a web request: on a CPU server a reply takes seconds, and a
gunicorn worker held that long (or forever, if the model server hangs) is a worker the site does
not have. The page polls the session instead (``GET /api/projects/<id>/leases/<lease>/red-team/``).
Bounds: ``max_tokens`` is always set, the HTTP request times out after RED_TEAM_TURN_TIMEOUT
seconds with one retry, and the Celery task has a hard time limit above that.

Safe to run twice (a redelivered job, a retry racing a late first attempt): the turn is written
only while it is still pending, so the first answer to land is the one kept.
"""
from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from annotations.feedback.redteam import model_messages
from annotations.models import ModelVersion
from annotations.models import RedTeamTurn as Turn

from .backends import default_model_version, servable_backend
from .client import ModelServerError, Sampling

ATTEMPTS = 2  # one retry of a connection error / 5xx; the turn then fails and the annotator may retry


def model_for(turn: Turn) -> ModelVersion:
    """The model the whole session talks to: the one that answered before in this session (so a
    change of the project's draft model mid-session does not switch models), else the project's
    draft model, else the configured default."""
    earlier = (Turn.objects.filter(session_id=turn.session_id, role="assistant", model_version__isnull=False)
               .exclude(pk=turn.pk).select_related("model_version").order_by("index").first())
    if earlier is not None:
        return earlier.model_version
    return turn.session.project.draft_model or default_model_version()


def sampling() -> Sampling:
    return Sampling(n=1, temperature=settings.RED_TEAM_TEMPERATURE, top_p=0.95, max_tokens=settings.RED_TEAM_MAX_TOKENS)


def generate_turn(*, turn_id: int) -> Turn:
    turn = Turn.objects.select_related("session__task", "session__project").get(pk=turn_id)
    if turn.status != Turn.Status.PENDING or turn.role != "assistant":
        return turn
    model = model_for(turn)
    params = sampling()
    started = time.monotonic()
    try:
        backend = servable_backend(model)  # a finetuned model: its adapter loaded on the server first
        client = getattr(backend, "client", None)
        if client is not None:  # HTTP backends: bounded per request, one retry
            client.timeout = float(settings.RED_TEAM_TURN_TIMEOUT)
            client.retries = ATTEMPTS - 1
        completion = backend.chat(model_messages(turn), params)[0]
    except (ModelServerError, SoftTimeLimitExceeded) as exc:
        reason = str(exc) if isinstance(exc, ModelServerError) else "the model took too long to answer"
        _store(turn, status=Turn.Status.FAILED, error=reason[:2000], model_version=model)
        return _reload(turn)
    text = completion.text.strip() or "(the model returned an empty reply)"
    _store(turn, status=Turn.Status.DONE, content=text, model_version=model,
           sampling_params={"temperature": params.temperature, "top_p": params.top_p,
                            "max_tokens": params.max_tokens},
           finish_reason=completion.finish_reason[:32], completion_tokens=completion.completion_tokens,
           latency_ms=int((time.monotonic() - started) * 1000), error="")
    return _reload(turn)


def _store(turn: Turn, **fields) -> int:
    from django.db.models import F

    return Turn.objects.filter(pk=turn.pk, status=Turn.Status.PENDING).update(
        completed_at=timezone.now(), attempts=F("attempts") + 1, **fields)


def _reload(turn: Turn) -> Turn:
    turn.refresh_from_db()
    return turn
