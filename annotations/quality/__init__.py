"""Quality control: gold tasks, review sampling, task completion, agreement between annotators,
annotator analytics and the rules that stop serving an annotator. See docs/architecture.md."""
