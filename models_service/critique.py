"""The model critiques a human submission against the instruction version it was made under.

Structured output (a bounded JSON schema) where the server supports it; the reply is validated
either way. An unusable reply (invalid JSON, cut off by ``max_tokens``, out of schema) is retried;
after the last attempt the critique is marked failed with the reason. Junk is never stored.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations.models import ModelVersion, Submission, TaskKind

from .backends import backend_for, default_model_version
from .client import ModelServerError, Sampling, json_schema_format
from .models import Critique

PROMPTS = Path(__file__).with_name("prompts")
CRITERIA = ("helpful", "truthful", "harmless")

# Bounded so a tiny model cannot run past max_tokens by adding items forever
# (shared/notes/vllm-cpu.md: every schema failure was a reply cut by max_tokens). The bounds are
# also the cost: a small model fills every string to its limit. With 3 issues of 160/240/240
# characters a critique of the flywheel's submissions took ~460 tokens (20-35 tok/s on the 2-core
# CPU server: 48 critiques ran ~12 minutes); with 2 of 100/160/160 and no whitespace between JSON
# tokens (VllmServer's --structured-outputs-config) ~210, none cut. Two short, quoted issues are
# what a reviewer reads beside the reply anyway.
CRITIQUE_SCHEMA = {
    "type": "object",
    "properties": {
        "issues": {
            "type": "array",
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "quote": {"type": "string", "maxLength": 100},
                    "problem": {"type": "string", "maxLength": 160},
                    "suggestion": {"type": "string", "maxLength": 160},
                },
                "required": ["quote", "problem", "suggestion"],
                "additionalProperties": False,
            },
        },
        "scores": {
            "type": "object",
            "properties": {c: {"type": "integer", "minimum": 1, "maximum": 7} for c in CRITERIA},
            "required": list(CRITERIA),
            "additionalProperties": False,
        },
        "verdict": {"type": "string", "enum": [v.value for v in Critique.Verdict]},
    },
    "required": ["issues", "scores", "verdict"],
    "additionalProperties": False,
}


class UnusableReply(ValueError):
    pass


def submission_data(submission: Submission) -> dict:
    """The untrusted part of the prompt, as plain data."""
    task = submission.task
    data: dict = {"task_kind": task.kind, "conversation": task.conversation}
    if submission.kind == TaskKind.DEMONSTRATION:
        data["labeller_reply"] = submission.reply.content if submission.reply else ""
    else:
        replies = {r.pk: r.content for r in task.replies.filter(for_ranking=True)}
        label = {rid: chr(ord("A") + i) for i, rid in enumerate(sorted(replies))}
        data["replies"] = {label[rid]: text for rid, text in sorted(replies.items())}
        data["labeller_ranking_best_first"] = [[label[int(r)] for r in group] for group in submission.ranking]
        data["labeller_ratings"] = {label[int(r)]: v for r, v in submission.ratings.items()}
        data["labeller_flags"] = {label[int(r)]: v for r, v in submission.flags.items()}
    if submission.rationale:
        data["labeller_rationale"] = submission.rationale
    return data


def build_messages(*, instructions: str, version: int, data: dict) -> list[dict]:
    system = (PROMPTS / "critique_system.txt").read_text().format(version=version, instructions=instructions)
    # json.dumps escapes quotes and newlines: task text cannot close the DATA block or pose as a
    # new section of the prompt.
    user = (PROMPTS / "critique_user.txt").read_text().format(data=json.dumps(data, ensure_ascii=False))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_reply(text: str, finish_reason: str) -> dict:
    if finish_reason == "length":
        raise UnusableReply("the reply was cut off by max_tokens")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnusableReply(f"not valid JSON ({exc.msg})") from None
    try:
        jsonschema.validate(value, CRITIQUE_SCHEMA)
    except jsonschema.ValidationError as exc:
        raise UnusableReply(f"does not match the schema: {exc.message[:200]}") from None
    return value


def critique_submission(*, submission_id: int, model_version: ModelVersion | None = None) -> Critique:
    """Create or finish the critique of one submission. Safe to run twice: a finished critique is
    returned as it is."""
    model_version = model_version or default_model_version()
    submission = Submission.objects.select_related("task", "reply", "instruction_version").get(pk=submission_id)
    critique, _ = Critique.objects.get_or_create(
        submission=submission, model_version=model_version,
        defaults={"instruction_version": submission.instruction_version},
    )
    if critique.status == Critique.Status.DONE:
        return critique
    version = submission.instruction_version
    messages = build_messages(instructions=version.body, version=version.number, data=submission_data(submission))
    backend = backend_for(model_version)
    error, raw = "", ""
    for attempt in range(settings.CRITIQUE_ATTEMPTS):
        # Greedy first for a stable verdict; a little temperature on retries to get out of a rut.
        sampling = Sampling(n=1, temperature=0.0 if attempt == 0 else 0.4, top_p=1.0,
                            max_tokens=settings.CRITIQUE_MAX_TOKENS, seed=attempt)
        try:
            completion = backend.chat(messages, sampling,
                                      response_format=json_schema_format("critique", CRITIQUE_SCHEMA))[0]
        except ModelServerError as exc:
            error = f"model server: {exc}"
            if not exc.retryable:
                break
            continue
        raw = completion.text
        try:
            value = parse_reply(completion.text, completion.finish_reason)
        except UnusableReply as exc:
            error = f"attempt {attempt + 1}: {exc}"
            continue
        return _finish(critique, attempts=attempt + 1, status=Critique.Status.DONE, verdict=value["verdict"],
                       scores=value["scores"], issues=value["issues"], error="", raw="")
    return _finish(critique, attempts=settings.CRITIQUE_ATTEMPTS, status=Critique.Status.FAILED, error=error,
                   raw=raw[:4000])


@transaction.atomic
def _finish(critique: Critique, **fields) -> Critique:
    for key, value in fields.items():
        setattr(critique, key, value)
    critique.finished_at = timezone.now()
    critique.save()
    return critique
