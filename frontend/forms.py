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


class SnapshotForm(forms.Form):
    """The filters and options of ``annotations.exports.service.create_snapshot``; the service
    checks them again (the API takes the same through ``SnapshotIn``)."""

    name = forms.CharField(max_length=200, required=False,
                           widget=forms.TextInput(attrs={"placeholder": "e.g. v2 accepted"}))
    formats = forms.MultipleChoiceField(choices=[("sft", "SFT (demonstrations)"), ("dpo", "DPO pairs (comparisons)")],
                                        initial=["sft", "dpo"], widget=forms.CheckboxSelectMultiple)
    instruction_versions = forms.TypedMultipleChoiceField(
        coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="Instruction versions",
        help_text="None ticked: work made under every version.")
    accepted_only = forms.BooleanField(required=False, label="Reviewed and accepted only")
    exclude_pending_review = forms.BooleanField(required=False, label="Leave out work waiting for review")
    completed_only = forms.BooleanField(required=False, label="Completed tasks only",
                                        help_text="Tasks with as many accepted submissions as the overlap.")
    min_agreement = forms.FloatField(required=False, min_value=-1, max_value=1, label="Minimum agreement",
                                     widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "any"}),
                                     help_text="Comparisons: annotators' mean pairwise Kendall tau (-1 to 1).")
    exclude_flagged = forms.BooleanField(required=False, initial=True, label="Leave out flagged replies")
    exclude_gold = forms.BooleanField(required=False, initial=True, label="Leave out gold tasks")
    date_from = forms.DateField(required=False, label="Submitted from", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="Submitted until", widget=forms.DateInput(attrs={"type": "date"}))
    eval_fraction = forms.FloatField(min_value=0, max_value=0.9, initial=0.1, label="Eval share",
                                     widget=forms.NumberInput(attrs={"step": "0.05"}))
    near_duplicates = forms.BooleanField(required=False, initial=True, label="Near-duplicate prompts in one split")
    licence = forms.CharField(max_length=200, required=False,
                              widget=forms.TextInput(attrs={"placeholder": "e.g. CC-BY-4.0"}))

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["instruction_versions"].choices = [(v, f"v{v}") for v in versions]

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data


class FinetuneForm(forms.Form):
    """A finetune job (``models_service.finetune.service.create_finetune_job``): what to train on,
    the method, the base model and the LoRA / training settings people change most; the rest keep
    the trainer's defaults (``models_service.finetune.train.DEFAULTS``)."""

    snapshot = forms.ModelChoiceField(queryset=None, empty_label=None, label="Snapshot")
    method = forms.ChoiceField(choices=[("sft", "SFT"), ("dpo", "DPO")])
    base_model = forms.ModelChoiceField(queryset=None, empty_label=None, to_field_name="name", label="Base model")
    lora_r = forms.IntegerField(min_value=1, max_value=256, label="LoRA rank r",
                                help_text="vLLM serves adapters up to its --max-lora-rank (8 by default).")
    lora_alpha = forms.IntegerField(min_value=1, max_value=1024, label="LoRA alpha")
    lora_dropout = forms.FloatField(min_value=0, max_value=0.9, label="LoRA dropout",
                                    widget=forms.NumberInput(attrs={"step": "0.01"}))
    target_modules = forms.CharField(max_length=300, label="Target modules", help_text="Comma separated.")
    learning_rate = forms.FloatField(min_value=1e-8, max_value=1, label="Learning rate",
                                     widget=forms.NumberInput(attrs={"step": "any"}))
    max_steps = forms.IntegerField(min_value=1, max_value=1_000_000, label="Steps")
    batch_size = forms.IntegerField(min_value=1, max_value=1024, label="Batch size")
    max_length = forms.IntegerField(min_value=16, max_value=32768, label="Max tokens per row")
    beta = forms.FloatField(min_value=0.001, max_value=10, label="DPO beta",
                            widget=forms.NumberInput(attrs={"step": "any"}))

    PARAMS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "max_steps", "batch_size",
              "max_length", "beta")

    def __init__(self, *args, snapshots, base_models, defaults, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["snapshot"].queryset = snapshots
        self.fields["snapshot"].label_from_instance = lambda s: f"#{s.pk} {s.name}".strip()
        self.fields["base_model"].queryset = base_models
        for name in self.PARAMS:
            value = defaults[name]
            self.fields[name].initial = ", ".join(value) if isinstance(value, list) else value

    def clean_target_modules(self):
        modules = [m.strip() for m in self.cleaned_data["target_modules"].split(",") if m.strip()]
        if not modules or any(not m.replace("_", "").replace(".", "").isalnum() for m in modules):
            raise forms.ValidationError("Module names such as q_proj, v_proj.")
        return modules

    def params(self) -> dict:
        return {name: self.cleaned_data[name] for name in self.PARAMS}
