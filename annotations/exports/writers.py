"""Incremental writers, fed whole JSONL lines.

Each split of a format (``sft.train`` ...) buffers at most ``ROW_GROUP_ROWS`` lines; a full buffer is
appended to the JSONL file and its meta file and parsed once by Arrow's JSON reader into one Parquet
row group (``pyarrow.json``, with the format's schema as the explicit schema), so no per-row Python
builds Arrow columns. Every file is hashed as its bytes are written (Parquet through a hashing
sink), so the snapshot's content hash costs no re-read.

The storing of a row group (JSON parsing, Parquet encoding and zstd, SHA-256, file writes: all
release the GIL) runs on one background thread per format, in submission order, while the caller
builds the next rows; at most ``PENDING_GROUPS`` groups wait, so memory stays flat whatever the
number of rows.
"""
from __future__ import annotations

import hashlib
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
PENDING_GROUPS = 3
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


class Background:
    """One thread that runs jobs in the order they were given; ``submit`` waits while more than
    ``depth`` are unfinished, and re-raises the first failure."""

    def __init__(self, depth: int = PENDING_GROUPS):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-writer")
        self.pending: deque[Future] = deque()
        self.depth = depth

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def close(self, *, cancel: bool = False) -> None:
        try:
            if not cancel:
                self.drain()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pending.clear()


class SplitWriter:
    """``<fmt>.<split>.jsonl``, ``.parquet`` and ``.meta.jsonl``: line n of the meta file describes row n
    (task, submissions, review state, completion, agreement), so provenance travels with the data
    without changing the training schema."""

    def __init__(self, folder: Path, fmt: str, split: str, row_group_rows: int = ROW_GROUP_ROWS,
                 background: Background | None = None):
        self.schema = SCHEMAS[fmt]
        self.background = background
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
        meta = "".join(self.metas[:n]).encode()
        del self.lines[:n], self.metas[:n]
        self.rows += n
        if self.background is None:
            self._store(data, meta)
        else:
            self.background.submit(self._store, data, meta)

    def _store(self, data: bytes, meta: bytes) -> None:
        self.jsonl.write(data)
        self.meta.write(meta)
        self.parquet.write_table(jsonl_table(data, self.schema))

    def close(self) -> dict[str, dict]:
        """Flush and close; with a background writer, call it after ``Background.drain``."""
        self.flush()
        if self.background is not None:
            self.background.drain()
        self.parquet.close()
        return {f.path.name: f.summary(self.rows) for f in (self.jsonl, self.parquet_file, self.meta)}

    def abort(self) -> None:
        try:
            self.parquet.close()
        except Exception:  # noqa: BLE001 - the export failed already; its folder is removed
            pass
        for f in (self.jsonl, self.parquet_file, self.meta):
            f.close()


class FormatWriters:
    """train/eval writers of one format (``sft`` or ``dpo``) sharing one background thread. Use
    ``close()`` at the end, ``abort()`` when the export fails."""

    def __init__(self, folder: Path, fmt: str):
        self.fmt = fmt
        self.background = Background()
        self.splits = {split: SplitWriter(folder, fmt, split, background=self.background)
                       for split in ("train", "eval")}

    def write(self, split: str, row: dict, meta: dict) -> None:
        """One row from Python values (the service's fast path hands ``SplitWriter.extend`` ready lines)."""
        self.splits[split].add(dumps(row) + "\n", dumps(meta) + "\n")

    def close(self) -> dict[str, dict]:
        files: dict[str, dict] = {}
        try:
            for writer in self.splits.values():
                files.update(writer.close())
        finally:
            self.background.close()
        return files

    def abort(self) -> None:
        """Drop what waits, stop the thread, close the files (the caller removes the folder)."""
        self.background.close(cancel=True)
        for writer in self.splits.values():
            writer.abort()
