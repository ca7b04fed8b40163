"""The results store of a sweep: ``runs.jsonl``, one record per finished run, that survives
interruption.

* A record is appended only after its run has finished, as one ``write`` of one line on an
  ``O_APPEND`` descriptor, then fsynced (:func:`widessl._io.append_jsonl`): a run cut off by
  Ctrl-C or a kill leaves no record at all, and a kill in the middle of the write leaves at
  most a torn last line without its newline.
* Opening the store repairs such a torn tail (truncates the file back to its last complete
  line), so the next append starts on a fresh line and no later record is lost.
* A record is identified by its ``config_hash`` (:meth:`RunConfig.hash`, over the full resolved
  run configuration including N, M and the seed): a resumed sweep skips every hash present.
* One writer at a time: the store holds an exclusive lock on ``DIR/.lock`` while it is open, so
  two sweeps writing to the same folder fail fast instead of interleaving records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from widessl._io import append_jsonl, read_jsonl
from widessl.errors import ConfigError

RUNS_FILE = "runs.jsonl"
LOCK_FILE = ".lock"


def repair_tail(path: str | os.PathLike) -> int:
    """Cut a torn last line (bytes after the final newline) off ``path``; returns the number of
    bytes removed (0 when the file ends cleanly or does not exist)."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        # Scan backwards for the last newline, in chunks.
        pos, chunk = size, 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            buf = fh.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


class ResultStore:
    """``runs.jsonl`` in ``folder``; use as a context manager to hold the writer's lock.

    >>> with ResultStore(out) as store:          # doctest: +SKIP
    ...     if cfg.hash() not in store:
    ...         store.append({...})
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / RUNS_FILE
        self._lock_fd: int | None = None
        self._records: dict[str, dict] | None = None
        self.repaired_bytes = 0

    # -- locking -------------------------------------------------------------------------
    def open(self) -> "ResultStore":
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"another widessl process is writing to {self.folder} (it holds {self.folder / LOCK_FILE}); "
                "wait for it to finish or use a different --out"
            ) from None
        self._lock_fd = fd
        self.repaired_bytes = repair_tail(self.path)
        self._records = None
        return self

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "ResultStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> dict[str, dict]:
        if self._records is None:
            self._records = {}
            for rec in read_jsonl(self.path):
                h = rec.get("config_hash")
                if isinstance(h, str) and h not in self._records:  # first record of a hash wins
                    self._records[h] = rec
        return self._records

    def records(self) -> dict[str, dict]:
        """{config_hash: record}, one per hash (the first if a hash was ever written twice)."""
        return dict(self._load())

    def __contains__(self, config_hash: str) -> bool:
        return config_hash in self._load()

    def __len__(self) -> int:
        return len(self._load())

    def __iter__(self) -> Iterator[dict]:
        return iter(list(self._load().values()))

    def get(self, config_hash: str) -> dict | None:
        return self._load().get(config_hash)

    # -- writing ---------------------------------------------------------------------------
    def append(self, record: dict) -> None:
        """Append one finished run (must carry ``config_hash``); a hash already stored is skipped."""
        if self._lock_fd is None:
            raise RuntimeError("ResultStore.append needs the store to be open (use it as a context manager)")
        h = record.get("config_hash")
        if not isinstance(h, str):
            raise ValueError("a record needs a string 'config_hash'")
        records = self._load()
        if h in records:
            return
        append_jsonl(self.path, record)
        records[h] = record


def load_records(folder: str | os.PathLike) -> dict[str, dict]:
    """Read-only view of a store's records (no lock, no repair): {config_hash: record}."""
    out: dict[str, dict] = {}
    for rec in read_jsonl(Path(folder) / RUNS_FILE):
        h = rec.get("config_hash")
        if isinstance(h, str) and h not in out:
            out[h] = rec
    return out
