"""What a stored conversation may look like, checked in one place.

Imports (one row at a time, errors carry a line number), misbehaviour reports from deployed
applications and red-team sessions all store ``[{role, content}]`` lists; they share these rules so
a conversation that one path accepts, the others and every page can rely on.
"""
from __future__ import annotations

ROLES = frozenset({"system", "user", "assistant"})
ROLE_CHOICES = [("system", "system"), ("user", "user"), ("assistant", "assistant")]
MAX_TURNS = 100


class ConversationInvalid(ValueError):
    """One reason a conversation (or a piece of text in it) is refused, in words a client can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_text(value, what: str, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConversationInvalid(f"{what} must be a non-empty string")
    if len(value) > max_chars:
        raise ConversationInvalid(f"{what} is longer than {max_chars} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ConversationInvalid(f"{what} contains a NUL character")
    return value


def clean_messages(conversation, *, max_chars: int, max_turns: int = MAX_TURNS) -> list[dict]:
    """A non-empty list of ``{role, content}`` messages, roles system / user / assistant, a system
    message only first, every content a non-empty string within ``max_chars``. Returns fresh
    dicts holding exactly those two keys."""
    if not isinstance(conversation, list) or not conversation:
        raise ConversationInvalid("conversation must be a non-empty list of {role, content} messages")
    if len(conversation) > max_turns:
        raise ConversationInvalid(f"conversation has more than {max_turns} messages")
    clean = []
    for i, message in enumerate(conversation, 1):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ConversationInvalid(f"message {i} must be an object with exactly 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise ConversationInvalid(f"message {i} has role {role!r}; expected system, user or assistant")
        if role == "system" and i != 1:
            raise ConversationInvalid(f"message {i}: a system message may only come first")
        content = check_text(message.get("content"), f"message {i} content", max_chars)
        clean.append({"role": role, "content": content})
    return clean
