"""Incremental writers: JSONL line by line, Parquet by row groups. Memory stays flat whatever the
number of rows; each writer hashes what it writes so the snapshot gets a content hash for free."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
SCHEMAS = {
    "sft": pa.schema([("messages", MESSAGES)]),
    "dpo": pa.schema([("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES)]),
}
ROW_GROUP_ROWS = 20_000


class JsonlWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = open(self.path, "wb")
        self.sha = hashlib.sha256()
        self.rows = 0

    def write(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self.file.write(line)
        self.sha.update(line)
        self.rows += 1

    def close(self) -> dict:
        self.file.close()
        return {"rows": self.rows, "bytes": self.path.stat().st_size, "sha256": self.sha.hexdigest()}


class ParquetWriter:
    """Buffers ``ROW_GROUP_ROWS`` rows column-wise, then writes them as one row group."""

    def __init__(self, path: Path, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS):
        self.path = Path(path)
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.writer = pq.ParquetWriter(self.path, schema, compression="zstd")
        self.columns: dict[str, list] = {name: [] for name in schema.names}
        self.buffered = 0
        self.rows = 0

    def write(self, row: dict) -> None:
        for name, values in self.columns.items():
            values.append(row[name])
        self.buffered += 1
        if self.buffered >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        table = pa.Table.from_pydict(self.columns, schema=self.schema)
        self.writer.write_table(table)
        self.rows += self.buffered
        self.columns = {name: [] for name in self.schema.names}
        self.buffered = 0

    def close(self) -> dict:
        self.flush()
        self.writer.close()
        sha = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        return {"rows": self.rows, "bytes": self.path.stat().st_size, "sha256": sha.hexdigest()}


class FormatWriters:
    """train/eval × jsonl/parquet writers of one format (``sft`` or ``dpo``), and beside each split a
    ``<fmt>.<split>.meta.jsonl`` whose line n describes row n (task, submissions, review state,
    completion, agreement): provenance travels with the data without changing the training schema."""

    def __init__(self, folder: Path, fmt: str):
        self.fmt = fmt
        self.writers = {}
        for split in ("train", "eval"):
            self.writers[(split, "jsonl")] = JsonlWriter(folder / f"{fmt}.{split}.jsonl")
            self.writers[(split, "parquet")] = ParquetWriter(folder / f"{fmt}.{split}.parquet", SCHEMAS[fmt])
            self.writers[(split, "meta")] = JsonlWriter(folder / f"{fmt}.{split}.meta.jsonl")

    def write(self, split: str, row: dict, meta: dict) -> None:
        self.writers[(split, "jsonl")].write(row)
        self.writers[(split, "parquet")].write(row)
        self.writers[(split, "meta")].write(meta)

    def close(self) -> dict[str, dict]:
        return {w.path.name: w.close() for w in self.writers.values()}
