import hashlib
import json
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotations.exports.writers import FormatWriters, SplitWriter, dumps


def rows(n):
    for i in range(n):
        yield (dumps({"prompt": [{"role": "user", "content": f"q{i} é\n"}],
                      "chosen": [{"role": "assistant", "content": "a" * (i % 7)}],
                      "rejected": [{"role": "assistant", "content": "b"}]}) + "\n",
               dumps({"task_id": i}) + "\n")


def test_row_groups_hashes_and_parquet_equal_the_jsonl(tmp_path):
    writers = FormatWriters(tmp_path, "dpo")
    for name, writer in writers.splits.items():
        writer.row_group_rows = 7
    batch = list(rows(50))
    for start in range(0, 50, 9):  # uneven batches: row groups still hold exactly 7 rows
        part = batch[start:start + 9]
        writers.splits["train"].extend([r for r, _m in part], [m for _r, m in part])
    files = writers.close()
    for name in ("dpo.train.jsonl", "dpo.train.meta.jsonl", "dpo.train.parquet", "dpo.eval.parquet"):
        assert files[name]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest(), name
    assert files["dpo.train.jsonl"]["rows"] == 50 and files["dpo.eval.jsonl"]["rows"] == 0
    parquet = pq.ParquetFile(tmp_path / "dpo.train.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [7] * 7 + [1]
    lines = (tmp_path / "dpo.train.jsonl").read_text().split("\n")[:-1]
    assert parquet.read().to_pylist() == [json.loads(line) for line in lines]
    assert pq.read_table(tmp_path / "dpo.eval.parquet").num_rows == 0
    assert not any(t.name.startswith("export-writer") for t in threading.enumerate())


def test_a_bad_row_fails_the_export_and_stops_the_thread(tmp_path):
    writers = FormatWriters(tmp_path, "sft")
    writers.splits["train"].extend(['{"messages": "not a list"}\n'], ['{}\n'])
    with pytest.raises(pa.ArrowInvalid):
        writers.close()
    writers.abort()
    assert not any(t.name.startswith("export-writer") for t in threading.enumerate())


def test_a_line_longer_than_a_json_block_is_parsed(tmp_path, monkeypatch):
    from annotations.exports import writers as module

    monkeypatch.setattr(module, "JSON_BLOCK_BYTES", 64)
    writer = SplitWriter(tmp_path, "sft", "train")
    line = dumps({"messages": [{"role": "user", "content": "x" * 500}]}) + "\n"
    writer.extend([line, line], ["{}\n", "{}\n"])
    writer.close()
    assert pq.read_table(tmp_path / "sft.train.parquet").to_pylist()[1]["messages"][0]["content"] == "x" * 500
