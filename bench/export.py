"""Export writer benchmark: N labelled records -> SFT + DPO JSONL and Parquet (train/eval split).

    python bench/export.py [--records 1000000] [--dir /tmp/export-bench]

Measures the per-row export path (message building, prompt key + split, JSONL line writer,
Parquet row-group writer, hashing) on synthetic records; the PostgreSQL read (a server-side
cursor in 2,000-row chunks) is not included. Reports wall time and peak RSS (ru_maxrss).
Half the records are demonstrations (one SFT row each), half rankings of 4 replies with one tie
(5 DPO pairs each, the pair rule of annotations.exports.pairs).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotations.exports import pairs, split  # noqa: E402  (no Django needed)
from annotations.exports.writers import FormatWriters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default="")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="export-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sft, dpo = FormatWriters(folder, "sft"), FormatWriters(folder, "dpo")
    rows = 0
    for i in range(args.records):
        conversation = [{"role": "user", "content": f"Question {i}: how would you explain topic {i % 997} to a child?"}]
        key = split.prompt_key(conversation)
        side = split.split_of(key, 0.1)
        if i % 2 == 0:
            sft.write(side, {"messages": conversation + [{"role": "assistant", "content": f"Answer {i}. " * 8}]},
                      meta={"task_id": i, "submission_id": i, "reply_id": i, "annotator_id": i % 50,
                            "instruction_version": 1, "review": "not_sampled", "task_complete": True})
            rows += 1
        else:
            replies = {r: f"Reply {r} to question {i}. " * 6 for r in range(4)}
            meta = {"task_id": i, "submission_ids": [i], "review": {"not_sampled": 1}, "task_complete": True,
                    "agreement_tau": None}
            for chosen, rejected in pairs.pairs_from_rankings([[[0], [1, 2], [3]]]):
                dpo.write(side, {"prompt": conversation, "chosen": [{"role": "assistant", "content": replies[chosen]}],
                                 "rejected": [{"role": "assistant", "content": replies[rejected]}]},
                          meta={**meta, "chosen_reply_id": chosen, "rejected_reply_id": rejected})
                rows += 1
    files = {**sft.close(), **dpo.close()}
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(f["bytes"] for f in files.values()) / 1e6
    print(f"records={args.records} rows={rows} wall={wall:.1f}s peak_rss={peak:.0f}MB files={size:.0f}MB in {folder}")


if __name__ == "__main__":
    main()
