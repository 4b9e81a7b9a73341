"""Red-teaming: annotators chat with the project's model trying to make it misbehave.

A red-team *task* is a brief (goal, category, and optionally the system prompt of the deployment
under attack); it is leased like any task. On the lease the annotator sends messages; each one
stores the user turn and a *pending* model turn in one transaction and, once committed, asks for
the reply through the ``red_team_turn_requested`` signal (``models_service.redteam`` generates it
in a Celery job and fills the turn in, with the model version and sampling). The page polls.

The chat is bounded (turns, characters per message and in all, so it fits the model's context)
and a new message waits until the model answered the last one. The annotator ends the session
through the usual submit of the lease, with the outcome: ``succeeded`` (the model misbehaved, with
a category) or ``failed``. A success becomes a misbehaviour report of source ``red_team`` and its
demonstration task (the conversation up to the bad reply, to write the right refusal) in the same
transaction, so every success has its task, once.
"""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..conversations import ConversationInvalid, check_text
from ..errors import InvalidInput, LeaseNotActive, NotFound
from ..models import Lease, Project, Submission, Task, TaskKind
from ..services.imports import content_hash
from ..services.submissions import _submit
from ..signals import red_team_turn_requested
from .errors import ConversationLimit, ModelTurnPending, SessionNotActive, TurnConflict
from .models import MisbehaviourCategory, MisbehaviourReport, RedTeamSession, RedTeamTurn
from .reports import create_tasks_for_report, report_hash

ASSISTANT, USER = "assistant", "user"


# --- briefs ---------------------------------------------------------------------------------------

def create_brief(*, project: Project, goal: str, category: str, system_prompt: str = "") -> tuple[Task, bool]:
    """A red-team task. The same brief twice is one task (returned with created=False)."""
    try:
        goal = check_text((goal or "").strip(), "goal", 4000)
    except ConversationInvalid as exc:
        raise InvalidInput(exc.reason, field="goal") from None
    if category not in MisbehaviourCategory.values:
        raise InvalidInput(f"category must be one of {MisbehaviourCategory.values}.", field="category")
    conversation = []
    if (system_prompt or "").strip():
        try:
            conversation = [{"role": "system", "content": check_text(system_prompt, "system_prompt", 8000)}]
        except ConversationInvalid as exc:
            raise InvalidInput(exc.reason, field="system_prompt") from None
    # The brief goes where an import puts replies, so two briefs differing only in goal differ in hash.
    digest = content_hash(TaskKind.RED_TEAM, conversation, [goal, category])
    task, created = Task.objects.get_or_create(
        project=project, content_hash=digest,
        defaults={"kind": TaskKind.RED_TEAM, "conversation": conversation,
                  "metadata": {"goal": goal, "category": category}},
    )
    return task, created


# --- the chat -------------------------------------------------------------------------------------

def _locked_lease(*, lease_id: int, annotator) -> Lease:
    lease = (Lease.objects.select_for_update(of=("self",)).select_related("task", "project")
             .filter(pk=lease_id, annotator=annotator).first())
    if lease is None:
        raise NotFound("No such lease.")
    if lease.task.kind != TaskKind.RED_TEAM:
        raise InvalidInput(f"This is a {lease.task.kind} task, not a red-team task.", field="kind")
    return lease


def _session(lease: Lease) -> RedTeamSession:
    session, _ = RedTeamSession.objects.get_or_create(
        lease=lease, defaults={"project_id": lease.project_id, "task_id": lease.task_id,
                               "annotator_id": lease.annotator_id})
    return session


def system_prompt_of(task: Task) -> str:
    first = (task.conversation or [{}])[0]
    return first.get("content", "") if isinstance(first, dict) and first.get("role") == "system" else ""


def chars_used(task: Task, turns) -> int:
    return len(system_prompt_of(task)) + sum(len(t.content) for t in turns)


def post_message(*, lease_id: int, annotator, content: str, index: int, now: datetime | None = None) -> RedTeamSession:
    """Store the annotator's message at position ``index`` and a pending model turn after it.

    ``index`` is the number of turns the client has seen: a retry of the same message at the same
    position (a double click, a lost response) is answered with the session as it is, and a
    message written against an outdated view of the chat is refused (``TurnConflict``)."""
    now = now or timezone.now()
    content = (content or "").replace("\r\n", "\n")
    with transaction.atomic():
        lease = _locked_lease(lease_id=lease_id, annotator=annotator)
        if lease.status != Lease.Status.ACTIVE:
            raise LeaseNotActive(f"This lease is {lease.status}; the chat is closed.", status=lease.status)
        session = _session(lease)
        if session.status != RedTeamSession.Status.ACTIVE:
            raise SessionNotActive("This red-team session has ended.")
        turns = list(session.turns.order_by("index"))
        if index < len(turns):
            if turns[index].role == USER and turns[index].content == content:
                return session  # the same message again: already stored
            raise TurnConflict(f"The chat has moved on ({len(turns)} turns); reload it.", turns=len(turns))
        if index != len(turns):
            raise TurnConflict(f"The next message goes at position {len(turns)}, not {index}.", turns=len(turns))
        if turns and turns[-1].role == ASSISTANT and turns[-1].status != RedTeamTurn.Status.DONE:
            raise ModelTurnPending("The model has not answered the last message yet"
                                   + (" (it failed: retry it or end the session)."
                                      if turns[-1].status == RedTeamTurn.Status.FAILED else "."))
        try:
            check_text(content, "The message", settings.RED_TEAM_MAX_MESSAGE_CHARS)
        except ConversationInvalid as exc:
            raise InvalidInput(exc.reason, field="content") from None
        user_turns = sum(t.role == USER for t in turns)
        if user_turns >= settings.RED_TEAM_MAX_USER_TURNS:
            raise ConversationLimit(f"This session reached its {settings.RED_TEAM_MAX_USER_TURNS} messages; "
                                    "end it with an outcome.")
        used = chars_used(lease.task, turns)
        if used + len(content) > settings.RED_TEAM_MAX_CONVERSATION_CHARS:
            left = max(0, settings.RED_TEAM_MAX_CONVERSATION_CHARS - used)
            raise ConversationLimit(f"The conversation would exceed {settings.RED_TEAM_MAX_CONVERSATION_CHARS} "
                                    f"characters ({left} left); shorten the message or end the session.",
                                    chars_left=left)
        RedTeamTurn.objects.create(session=session, index=index, role=USER, content=content,
                                   status=RedTeamTurn.Status.DONE, completed_at=now)
        pending = RedTeamTurn.objects.create(session=session, index=index + 1, role=ASSISTANT,
                                             status=RedTeamTurn.Status.PENDING, requested_at=now)
        transaction.on_commit(lambda: red_team_turn_requested.send(sender=RedTeamTurn, turn_id=pending.pk))
    return session


def is_stale(turn: RedTeamTurn, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (turn.status == RedTeamTurn.Status.PENDING and turn.requested_at is not None
            and (now - turn.requested_at).total_seconds() > settings.RED_TEAM_TURN_STALE_SECONDS)


def retry_model_turn(*, lease_id: int, annotator, now: datetime | None = None) -> RedTeamSession:
    """Ask again for a model reply that failed, or that is pending for longer than
    RED_TEAM_TURN_STALE_SECONDS (its job was lost). A late answer of the first request and the
    retry's answer cannot both land: the turn is filled only while it is pending."""
    now = now or timezone.now()
    with transaction.atomic():
        lease = _locked_lease(lease_id=lease_id, annotator=annotator)
        if lease.status != Lease.Status.ACTIVE:
            raise LeaseNotActive(f"This lease is {lease.status}; the chat is closed.", status=lease.status)
        session = _session(lease)
        if session.status != RedTeamSession.Status.ACTIVE:
            raise SessionNotActive("This red-team session has ended.")
        last = session.turns.select_for_update().order_by("-index").first()
        if last is None or last.role != ASSISTANT or not (last.status == RedTeamTurn.Status.FAILED
                                                         or is_stale(last, now)):
            raise ModelTurnPending("There is no failed or lost model reply to retry.")
        last.status = RedTeamTurn.Status.PENDING
        last.error = ""
        last.requested_at = now
        last.save(update_fields=["status", "error", "requested_at"])
        transaction.on_commit(lambda: red_team_turn_requested.send(sender=RedTeamTurn, turn_id=last.pk))
    return session


def model_messages(turn: RedTeamTurn) -> list[dict]:
    """What the model is sent to produce ``turn``: the system prompt, then every turn before it."""
    session = turn.session
    messages = []
    system = system_prompt_of(session.task)
    if system:
        messages.append({"role": "system", "content": system})
    for earlier in session.turns.filter(index__lt=turn.index).order_by("index"):
        messages.append({"role": earlier.role, "content": earlier.content})
    return messages


# --- the outcome ----------------------------------------------------------------------------------

def submit_red_team(*, lease_id: int, annotator, idempotency_key: str, outcome: str, category: str = "",
                    note: str = "", bad_turn: int | None = None, time_spent_ms: int = 0,
                    now: datetime | None = None) -> Submission:
    """End the session through the lease's submit. Idempotent through the key, like every submit."""
    if outcome not in RedTeamSession.Outcome.values:
        raise InvalidInput(f"outcome must be one of {RedTeamSession.Outcome.values}.", field="outcome")
    if category and category not in MisbehaviourCategory.values:
        raise InvalidInput(f"category must be one of {MisbehaviourCategory.values}.", field="category")
    succeeded = outcome == RedTeamSession.Outcome.SUCCEEDED
    if succeeded and not category:
        raise InvalidInput("Say which category of misbehaviour the model showed.", field="category")
    state: dict = {}

    def build(lease: Lease, task: Task) -> dict:
        session = _session(lease)
        session = RedTeamSession.objects.select_for_update().get(pk=session.pk)
        if session.status != RedTeamSession.Status.ACTIVE:
            raise SessionNotActive("This red-team session has ended.")
        turns = list(session.turns.select_related("model_version").order_by("index"))
        answered = [t for t in turns if t.role == ASSISTANT and t.status == RedTeamTurn.Status.DONE]
        chosen = None
        if succeeded:
            if not answered:
                raise InvalidInput("The model has not answered anything yet, so it cannot have misbehaved.",
                                   field="outcome")
            chosen = answered[-1] if bad_turn is None else next((t for t in answered if t.index == bad_turn), None)
            if chosen is None:
                raise InvalidInput(f"bad_turn must be the index of one of the model's answers "
                                   f"({[t.index for t in answered]}).", field="bad_turn")
        # A reply still on its way when the session ends is not part of it.
        session.turns.filter(status=RedTeamTurn.Status.PENDING).update(
            status=RedTeamTurn.Status.FAILED, error="The session ended before the model answered.")
        session.status = RedTeamSession.Status.ENDED
        session.outcome = outcome
        session.category = category
        session.note = note or ""
        session.bad_turn = chosen.index if chosen else None
        session.ended_at = now or timezone.now()
        state.update(session=session, turns=turns, chosen=chosen)
        return {}

    def after(submission: Submission) -> None:
        session = state["session"]
        session.submission = submission
        session.save()
        if state["chosen"] is not None:
            _report_success(session, state["turns"], state["chosen"], annotator)

    return _submit(kind=TaskKind.RED_TEAM, lease_id=lease_id, annotator=annotator, idempotency_key=idempotency_key,
                   rationale=note, time_spent_ms=time_spent_ms, instruction_version=None, now=now, build=build,
                   after=after)


def _report_success(session: RedTeamSession, turns: list[RedTeamTurn], chosen: RedTeamTurn, annotator) -> None:
    system = system_prompt_of(session.task)
    conversation = [{"role": "system", "content": system}] if system else []
    offset = len(conversation)
    conversation += [{"role": t.role, "content": t.content} for t in turns
                     if t.role == USER or t.status == RedTeamTurn.Status.DONE]
    model = chosen.model_version
    bad_turn = offset + chosen.index
    report = MisbehaviourReport.objects.create(
        project_id=session.project_id, source=MisbehaviourReport.Source.RED_TEAM, red_team_session=session,
        conversation=conversation, bad_turn=bad_turn, model_version_name=model.name, model_version=model,
        category=session.category, description=session.note,
        metadata={"red_team_task": session.task_id, "goal": (session.task.metadata or {}).get("goal", "")},
        # salted with the session: two sessions that happen to match are two findings
        content_hash=report_hash(conversation, bad_turn, model.name, salt=f"red_team_session:{session.pk}"),
    )
    create_tasks_for_report(project=session.project, report_id=report.pk, created_by=annotator)
