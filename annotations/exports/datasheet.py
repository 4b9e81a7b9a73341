"""A datasheet per snapshot, as JSON (for tools) and Markdown (for people)."""
from __future__ import annotations

import json
from pathlib import Path

FILES = ("datasheet.json", "datasheet.md")


def build(*, snapshot, stats, files: dict, seconds: float, screening: dict | None = None) -> dict:
    from .service import annotator_names

    names = annotator_names(stats.annotators)
    sft_rows = sum(v for k, v in stats.sources.items() if k.startswith("sft:"))
    dpo_replies = sum(v for k, v in stats.sources.items() if k.startswith("dpo."))
    dpo_model = sum(v for k, v in stats.sources.items() if k.startswith("dpo.") and k.endswith(":model"))
    chosen = sum(v for k, v in stats.sources.items() if k.startswith("dpo.chosen:"))
    chosen_model = stats.sources.get("dpo.chosen:model", 0)
    return {
        "snapshot": snapshot.pk,
        "name": snapshot.name,
        "project": {"id": snapshot.project_id, "name": snapshot.project.name},
        "created_by": getattr(snapshot.created_by, "username", None),
        "created_at": snapshot.created_at.isoformat(),
        "licence": snapshot.options.get("licence", ""),
        "filters": snapshot.filters,
        "options": snapshot.options,
        "content_sha256": snapshot.content_sha256,
        "counts": snapshot.counts,
        "instruction_versions": {str(k): v for k, v in sorted(stats.instruction_versions.items())},
        "annotators": {names.get(k, str(k)): v for k, v in stats.annotators.most_common()},
        "flags": dict(stats.flags),
        "agreement": stats.agreement(),
        "sources": dict(stats.sources),
        "model_draft_share": {
            "sft_edited_drafts": round(stats.sources.get("sft:edited_draft", 0) / sft_rows, 4) if sft_rows else 0.0,
            "dpo_replies_from_model": round(dpo_model / dpo_replies, 4) if dpo_replies else 0.0,
            "dpo_chosen_from_model": round(chosen_model / chosen, 4) if chosen else 0.0,
        },
        "pair_rule": "Borda count over annotators (score = replies below - replies above, ties equal); "
                     "pairs across aggregated tie-groups only, ties never become pairs.",
        "split": {"eval_fraction": snapshot.options.get("eval_fraction"),
                  "grouping": "exact prompt (normalised SHA-256) + " + str(stats.groups["near_duplicates"])},
        "files": files,
        "screening": screening or {"status": "not run"},
        "build_seconds": round(seconds, 2),
    }


def _screening_lines(screening: dict) -> list[str]:
    """Findings of the scan for data attacks; their ids are what the exclude endpoint takes."""
    if screening.get("status") != "done":
        return [f"Scan {screening.get('status', 'not run')}. {screening.get('error', '')}".rstrip()]
    lines = [f"Scanned {screening['items']} tasks for trigger phrases, encoded payloads, gibberish suffixes and "
             "near-duplicate floods."]
    if not screening["findings"]:
        return [*lines, "", "No findings."]
    lines += ["", "| finding | kind | score | tasks | exclude with |", "|---|---|---|---|---|"]
    for f in screening["findings"]:
        title = f["title"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {f['id']}: {title} | {f['kind']} | {f['score']} | {f['items']} | `POST {f['exclude']}` |")
    return lines


def _agreement_lines(agreement: dict) -> list[str]:
    if not agreement.get("dpo_tasks_measured"):
        return ["No exported comparison task was ranked by two or more people."]
    return [f"Mean task tau {agreement['mean_task_tau']} over {agreement['dpo_tasks_measured']} DPO tasks "
            f"({agreement['measure']}). Per row: `agreement_tau` in `dpo.<split>.meta.jsonl`."]


def write(folder: Path, sheet: dict) -> None:
    (folder / "datasheet.json").write_text(json.dumps(sheet, indent=2, ensure_ascii=False))
    c = sheet["counts"]
    lines = [
        f"# Datasheet: snapshot {sheet['snapshot']} of {sheet['project']['name']}",
        "",
        f"- Created by {sheet['created_by']} at {sheet['created_at']}",
        f"- Licence: {sheet['licence'] or 'not stated'}",
        f"- Content SHA-256: `{sheet['content_sha256']}`",
        f"- Filters: `{json.dumps(sheet['filters'])}`",
        f"- Split: {sheet['split']['eval_fraction']} eval; grouping by {sheet['split']['grouping']}",
        f"- Pairs: {sheet['pair_rule']}",
        "",
        "## Counts",
        "",
        "| what | n |", "|---|---|",
        f"| submissions read | {c['records']} |",
        *(f"| rows {k} | {v} |" for k, v in sorted(c["rows"].items())),
        *(f"| tasks {k} | {v} |" for k, v in sorted(c["tasks"].items())),
        *(f"| excluded {k} | {v} |" for k, v in sorted(c["excluded"].items())),
        f"| annotators | {c['annotators']} |",
        "",
        "## Review",
        "",
        "Exported submissions by review state (fixed: a reviewer's correction is what was exported; "
        "not_sampled: not chosen for review, counts as accepted). Per row: `<format>.<split>.meta.jsonl`.",
        "",
        *(f"- {k}: {v}" for k, v in sorted((c.get("review") or {}).items())),
        *([] if c.get("review") else ["- none"]),
        "",
        "## Instruction versions",
        "",
        *(f"- v{k}: {v} submissions" for k, v in sheet["instruction_versions"].items()),
        "",
        "## Annotators",
        "",
        *(f"- {k}: {v}" for k, v in list(sheet["annotators"].items())[:100]),
        "",
        "## Flags",
        "",
        *(f"- {k}: {v}" for k, v in sheet["flags"].items()),
        *([] if sheet["flags"] else ["- none"]),
        "",
        "## Agreement",
        "",
        *_agreement_lines(sheet.get("agreement") or {}),
        "",
        "## Model-draft share",
        "",
        *(f"- {k}: {v:.1%}" for k, v in sheet["model_draft_share"].items()),
        "",
        "## Data screening",
        "",
        *_screening_lines(sheet.get("screening") or {}),
        "",
        "## Files",
        "",
        "| file | rows | bytes |", "|---|---|---|",
        *(f"| {k} | {v.get('rows', '')} | {v['bytes']} |" for k, v in sorted(sheet["files"].items())),
        "",
    ]
    (folder / "datasheet.md").write_text("\n".join(lines))
