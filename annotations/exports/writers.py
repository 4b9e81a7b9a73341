"""Incremental writers, fed whole JSONL lines.

Each split of a format (``sft.train`` ...) buffers at most ``ROW_GROUP_ROWS`` lines; a full buffer is
appended to the JSONL file and its meta file and parsed once by Arrow's JSON reader into one Parquet
row group (``pyarrow.json``, with the format's schema as the explicit schema), so no per-row Python
builds Arrow columns. Memory stays flat whatever the number of rows; every file is hashed as its
bytes are written (Parquet through a hashing sink), so the snapshot's content hash costs no re-read.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
SCHEMAS = {
    "sft": pa.schema([("messages", MESSAGES)]),
    "dpo": pa.schema([("prompt", MESSAGES), ("chosen", MESSAGES), ("rejected", MESSAGES)]),
}
ROW_GROUP_ROWS = 20_000
JSON_BLOCK_BYTES = 1 << 24  # a longer line gets a block of its own


def dumps(value) -> str:
    """The JSON of every exported line: compact, UTF-8 as is (what the SQL in service.py builds too)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class HashingFile:
    """A binary file that hashes every byte written to it; Parquet writes through one as well."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = open(self.path, "wb")
        self.sha = hashlib.sha256()
        self.closed = False

    def write(self, data) -> int:
        self.sha.update(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.file.close()
            self.closed = True

    def summary(self, rows: int) -> dict:
        self.close()
        return {"rows": rows, "bytes": self.path.stat().st_size, "sha256": self.sha.hexdigest()}


def jsonl_table(data: bytes, schema: pa.Schema) -> pa.Table:
    """JSONL bytes -> an Arrow table of ``schema`` (every field required, nothing else allowed)."""
    parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        # One thread: the export's other core is PostgreSQL's, making the next rows.
        table = pajson.read_json(pa.BufferReader(data), read_options=pajson.ReadOptions(
            block_size=JSON_BLOCK_BYTES, use_threads=False), parse_options=parse)
    except pa.ArrowInvalid:
        if len(data) < JSON_BLOCK_BYTES:
            raise
        # A line longer than a block ("straddling object"): parse the batch as one block.
        table = pajson.read_json(pa.BufferReader(data), read_options=pajson.ReadOptions(
            block_size=len(data) + 1, use_threads=False), parse_options=parse)
    return table.select(schema.names).cast(schema)


class SplitWriter:
    """``<fmt>.<split>.jsonl``, ``.parquet`` and ``.meta.jsonl``: line n of the meta file describes row n
    (task, submissions, review state, completion, agreement), so provenance travels with the data
    without changing the training schema."""

    def __init__(self, folder: Path, fmt: str, split: str, row_group_rows: int = ROW_GROUP_ROWS):
        self.schema = SCHEMAS[fmt]
        self.row_group_rows = row_group_rows
        self.jsonl = HashingFile(folder / f"{fmt}.{split}.jsonl")
        self.meta = HashingFile(folder / f"{fmt}.{split}.meta.jsonl")
        self.parquet_file = HashingFile(folder / f"{fmt}.{split}.parquet")
        self.parquet = pq.ParquetWriter(self.parquet_file, self.schema, compression="zstd")
        self.lines: list[str] = []
        self.metas: list[str] = []
        self.rows = 0

    def add(self, line: str, meta: str) -> None:
        """One row: its JSONL line and its meta line, each ending in a newline."""
        self.extend([line], [meta])

    def extend(self, lines: list[str], metas: list[str]) -> None:
        """Rows as two lists of the same length; every ``row_group_rows`` rows become one row group."""
        self.lines += lines
        self.metas += metas
        while len(self.lines) >= self.row_group_rows:
            self._write(self.row_group_rows)

    def flush(self) -> None:
        if self.lines:
            self._write(len(self.lines))

    def _write(self, n: int) -> None:
        data = "".join(self.lines[:n]).encode()
        self.jsonl.write(data)
        self.meta.write("".join(self.metas[:n]).encode())
        self.parquet.write_table(jsonl_table(data, self.schema))
        self.rows += n
        del self.lines[:n], self.metas[:n]

    def close(self) -> dict[str, dict]:
        self.flush()
        self.parquet.close()
        return {f.path.name: f.summary(self.rows) for f in (self.jsonl, self.parquet_file, self.meta)}


class FormatWriters:
    """train/eval writers of one format (``sft`` or ``dpo``)."""

    def __init__(self, folder: Path, fmt: str):
        self.fmt = fmt
        self.splits = {split: SplitWriter(folder, fmt, split) for split in ("train", "eval")}

    def write(self, split: str, row: dict, meta: dict) -> None:
        """One row from Python values (the service's fast path hands ``SplitWriter.add`` ready lines)."""
        self.splits[split].add(dumps(row) + "\n", dumps(meta) + "\n")

    def close(self) -> dict[str, dict]:
        files: dict[str, dict] = {}
        for writer in self.splits.values():
            files.update(writer.close())
        return files
