"""Writers for ``RecordStore.export``: CSV and Parquet, one chunk of records at a time."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

EXPORT_COLUMNS = ("id", "created", "model", "artifact_hash", "source", "input_fingerprint", "label", "score",
                  "latency_ms", "key", "result", "input_file", "heatmap_file")
EXPORT_FORMATS = ("csv", "parquet")


def write_csv(path: Path, chunks: Iterator[list[dict]]) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for chunk in chunks:
            for d in chunk:
                w.writerow([json.dumps(d[c], ensure_ascii=False) if c == "result" else d[c]
                            for c in EXPORT_COLUMNS])
            n += len(chunk)
    return n


def write_parquet(path: Path, chunks: Iterator[list[dict]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.int64()), ("created", pa.timestamp("us", tz="UTC")), ("model", pa.string()),
                        ("artifact_hash", pa.string()), ("source", pa.string()),
                        ("input_fingerprint", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                        ("latency_ms", pa.float64()), ("key", pa.string()), ("result", pa.string()),
                        ("input_file", pa.string()), ("heatmap_file", pa.string())])
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in chunks:
            cols = {c: [d[c] for d in chunk] for c in EXPORT_COLUMNS}
            cols["created"] = [datetime.fromisoformat(v) for v in cols["created"]]
            cols["result"] = [json.dumps(v, ensure_ascii=False) for v in cols["result"]]
            writer.write_table(pa.table(cols, schema=schema))
            n += len(chunk)
    return n
