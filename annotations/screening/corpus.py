"""What a scan reads, and what it says about it.

A ``Corpus`` is column-wise: item ``i`` is one task, with its prompt (the user turns), the other
turns, the replies given as labels (demonstrations, imported replies) and the preference pairs its
rankings produce (chosen text, rejected text). Loaders for an import batch and for a snapshot live
in ``annotations.screening.service``; detectors only see this.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Corpus:
    task_ids: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)  # system and earlier assistant turns
    replies: list[list[str]] = field(default_factory=list)
    pairs: list[list[tuple[str, str]]] = field(default_factory=list)

    def add(self, task_id: int, conversation: list[dict], replies=(), pairs=()) -> None:
        user = [str(m.get("content", "")) for m in conversation if m.get("role") == "user"]
        other = [str(m.get("content", "")) for m in conversation if m.get("role") != "user"]
        self.task_ids.append(task_id)
        self.prompts.append("\n".join(user))
        self.contexts.append("\n".join(other))
        self.replies.append(list(replies))
        self.pairs.append(list(pairs))

    def __len__(self) -> int:
        return len(self.task_ids)


@dataclass
class Finding:
    """One thing a detector found: ``items`` are corpus indexes; ``evidence`` is JSON-ready."""

    kind: str
    title: str
    score: float
    items: list[int]
    evidence: dict
