"""State that only the web pages need: which instruction version a person last confirmed reading."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class InstructionAcknowledgement(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("annotations.Project", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("annotations.InstructionVersion", on_delete=models.CASCADE, related_name="+")
    acknowledged_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="instruction_ack_unique")]

    def __str__(self) -> str:
        return f"{self.user} read v{self.version.number} of {self.project}"
