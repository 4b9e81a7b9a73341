from __future__ import annotations

from django import forms

from annotations.models import LABELLING_KINDS, Project, Role, TaskKind
from annotations.services.instructions import MAX_INSTRUCTIONS_CHARS

SETTINGS_FIELDS = ("name", "description", "overlap", "comparison_k", "pending_cap", "lease_seconds", "drafts_n",
                   "draft_model", "draft_on_import", "gold_rate", "review_rate", "review_new_until", "on_reject")


class ProjectSettingsForm(forms.ModelForm):
    """Shapes and field limits only; update_project_settings applies the change and its rules."""

    class Meta:
        model = Project
        fields = list(SETTINGS_FIELDS)
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        help_texts = {
            "comparison_k": "Replies per comparison task.",
            "pending_cap": "Open tasks one annotator may hold.",
            "lease_seconds": "Time an annotator has for one task.",
            "drafts_n": "Model drafts requested per prompt.",
            "draft_model": "The model that drafts replies; empty uses the configured default model.",
            "draft_on_import": "Queue a drafting job for every successful import.",
            "overlap": "Different annotators per task; a task is complete once this many of its submissions are "
                       "accepted (reviewed and accepted, or not sampled for review).",
            "gold_rate": "Share of 'next task' requests that serve an unseen gold task first (0-1).",
            "review_rate": "Share of submissions sampled for the review queue (0-1).",
            "review_new_until": "Review everything of an annotator until this many of their submissions are accepted.",
            "on_reject": "What a rejection does with the task's slot.",
        }
        labels = {"draft_model": "Drafting model", "draft_on_import": "Draft imported prompts",
                  "gold_rate": "Gold rate", "review_rate": "Review rate",
                  "review_new_until": "Always review new annotators until accepted", "on_reject": "On rejection"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["draft_model"].empty_label = "Default model"

    def _post_clean(self):
        # Model validation runs in the service, inside its transaction; don't run it twice.
        pass


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)


class InstructionsForm(forms.Form):
    title = forms.CharField(max_length=200, required=False, label="What changed",
                            widget=forms.TextInput(attrs={"placeholder": "e.g. Clarified how to rank refusals"}))
    body = forms.CharField(max_length=MAX_INSTRUCTIONS_CHARS, strip=False,
                           widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "true"}))


class ImportForm(forms.Form):
    file = forms.FileField(allow_empty_file=False, help_text="JSONL (one object per line) or CSV with a header.")
    format = forms.ChoiceField(choices=[("", "From the file name"), ("jsonl", "JSONL"), ("csv", "CSV")], required=False)
    kind = forms.ChoiceField(choices=[(k.value, k.label) for k in LABELLING_KINDS], initial=TaskKind.DEMONSTRATION,
                             label="Default task kind")


class ImportURLForm(forms.Form):
    url = forms.CharField(max_length=2000, label="File URL",
                          help_text="An http(s) URL of a JSONL or CSV file on a public host; the server fetches it.",
                          widget=forms.URLInput(attrs={"placeholder": "https://example.org/prompts.jsonl"}))
    format = forms.ChoiceField(choices=[("", "From the URL"), ("jsonl", "JSONL"), ("csv", "CSV")], required=False)
    kind = forms.ChoiceField(choices=[(k.value, k.label) for k in LABELLING_KINDS], initial=TaskKind.DEMONSTRATION,
                             label="Default task kind")
