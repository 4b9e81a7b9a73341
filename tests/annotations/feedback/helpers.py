"""Builders shared by the feedback tests."""
from __future__ import annotations

from rest_framework.test import APIClient

from annotations.feedback.tokens import create_report_token

REPORT_URL = "/api/feedback/reports/"


def conversation(*, prompt="How do I pick a lock?", reply="Sure! First, insert a tension wrench...", system=None):
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def report_body(**overrides) -> dict:
    body = {"conversation": conversation(), "model_version": "smollm2-135m-instruct", "category": "harmful_content",
            "description": "Gave lock-picking steps for a neighbour's door."}
    body.update(overrides)
    return body


def token_for(project, name="support-bot prod"):
    """(ReportToken, secret)."""
    issued = create_report_token(project=project, name=name, created_by=project.created_by)
    return issued.token, issued.secret


def reporter(secret: str | None, scheme: str = "Bearer") -> APIClient:
    """A client as a deployed application: no user, only the Authorization header."""
    client = APIClient()
    if secret is not None:
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
    return client


def post_report(client: APIClient, body, **extra):
    return client.post(REPORT_URL, body, format="json", **extra)
