"""Dataset snapshots: frozen, hashed exports of labelled work in formats TRL reads as is.

``service`` selects and streams the records, ``pairs`` turns K-wise rankings into preference pairs,
``split`` keeps duplicate prompts on one side of the train/eval split, ``writers`` writes JSONL and
Parquet incrementally, ``datasheet`` describes what came out.
"""
