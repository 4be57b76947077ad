"""``records.jsonl``: one JSON line per (image, curve, setting) measurement, appended as work finishes.

Only the main process writes, one whole line at a time, so a crash leaves at most one broken last
line, which is skipped on reading. A record is identified by its key; when a key appears twice
the later line wins. The key holds the image's content digest and the coder (weights digest or
library version and options), so changed images, weights or encoders are measured afresh instead
of being mixed with stale numbers.

One run writes a directory at a time: a second ``ugicm eval`` on the same ``--out`` would measure
the same units again and race the first to results.json, so it is refused (an advisory lock on
``.records.lock``, released when the run ends or dies).
"""

from __future__ import annotations

import json
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs stay possible there
    fcntl = None

RECORDS_FILE = "records.jsonl"
LOCK_FILE = ".records.lock"


class RecordsBusy(Exception):
    """Another process is writing the same records directory."""


def record_key(record: dict) -> tuple:
    """(image, its digest, curve, setting, coder), plus (degradation, seed) for the records of
    ``ugicm eval --tasks restore``, which code degraded copies of the images."""
    key = (record["image"], record["image_sha256"], record["curve"], record["setting"], record["coder"])
    if "degradation" in record:
        key += (record["degradation"], record["seed"])
    return key


def load(out_dir: Path) -> dict[tuple, dict]:
    path = out_dir / RECORDS_FILE
    records: dict[tuple, dict] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
                records[record_key(record)] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupted run
    return records


class RecordLog:
    """Appends records to ``records.jsonl`` and keeps the in-memory index current."""

    def __init__(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(out_dir / LOCK_FILE)
        self.path = out_dir / RECORDS_FILE
        self.records = load(out_dir)
        self._file = None

    def append(self, record: dict) -> None:
        if self._file is None:
            unfinished = False
            if self.path.is_file() and self.path.stat().st_size > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, 2)
                    unfinished = f.read(1) != b"\n"
            self._file = open(self.path, "a", encoding="utf-8")
            if unfinished:
                self._file.write("\n")  # never glue onto a line an interrupted run left unfinished
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        self.records[record_key(record)] = record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the lock
            self._lock = None


def _lock(path: Path):
    handle = open(path, "a")
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RecordsBusy(
                f"another ugicm eval is writing {path.parent}; wait for it or use another --out"
            ) from None
    return handle
