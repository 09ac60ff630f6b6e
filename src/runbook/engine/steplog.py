"""An attempt's output, kept in the state store next to the local log file.

The local file (``.runbook/logs/RUN/STEP.N.log``) is only on the machine that
ran the step; the store is shared, so ``runbook logs`` reads from there on any
machine. Lines arrive already masked (the same text the file gets). They are
batched: a background thread commits what accumulated every
``FLUSH_INTERVAL_S`` (0.25 s), so a step printing thousands of lines a second
costs four inserts a second, off the step's own thread, and ``runbook logs
--follow`` (polling every 0.2 s) shows a line about half a second after it
was printed (bench/logs_bench.py). A SIGKILL loses at most the last quarter
second; every chunk committed before stays.

Per attempt the store keeps at most ``LOG_CAP_BYTES`` of text (1 MiB, about
10,000 lines of 100 characters); past it lines go only to the local file, and
a last line says how much was left out and where the whole log is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from runbook.errors import StateStoreError
from runbook.safefile import AppendLog
from runbook.state import StateStore

LOG_CAP_BYTES = 1024 * 1024
FLUSH_INTERVAL_S = 0.25


class StoredLog:
    """Lines of one attempt, batched into ``step_logs`` chunks by a daemon thread."""

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        step_id: str,
        attempt: int,
        *,
        local_path: Path,
        cap: int = LOG_CAP_BYTES,
        interval: float = FLUSH_INTERVAL_S,
        warn: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self._store = store
        self._key = (run_id, step_id, attempt)
        self._local_path = local_path
        self._cap = cap
        self._interval = interval
        self._warn = warn
        self._pending: list[str] = []
        self._stored_bytes = 0
        self._dropped_lines = 0
        self._dropped_bytes = 0
        self._seq = 0
        self._failed: str | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def write(self, line: str) -> None:
        """Queue one (masked) line; returns at once."""
        size = len(line.encode("utf-8", "replace")) + 1
        with self._wake:
            if self._stored_bytes + size > self._cap:
                self._dropped_lines += 1
                self._dropped_bytes += size
                return
            self._stored_bytes += size
            self._pending.append(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._flush_loop, name=f"runbook-log-{self._key[1]}", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Commit what is pending and the note on lines left out; stop the thread. Idempotent."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        self._flush()
        if self._dropped_lines:
            cap_mib = self._cap / (1024 * 1024)
            note = (
                f"[runbook] {self._dropped_lines} more line(s) ({self._dropped_bytes:,} bytes) not stored: the store keeps "
                f"{cap_mib:g} MiB per attempt; the whole log is {self._local_path} on {self._store.host}"
            )
            self._commit(note, stream="runbook")
        if self._failed is not None:
            self._warn(f"the step's output could not all be stored ({self._failed}); the whole log is {self._local_path}")

    def _flush_loop(self) -> None:
        while True:
            with self._wake:
                if self._closed:
                    return
                self._wake.wait(self._interval)
                if self._closed:
                    return
            self._flush()

    def _flush(self) -> None:
        with self._wake:
            lines, self._pending = self._pending, []
        if lines:
            self._commit("\n".join(lines), stream="output")

    def _commit(self, text: str, *, stream: str) -> None:
        # One writer per attempt (the flush thread, then close() after joining it): seq needs no lock.
        self._seq += 1
        try:
            self._store.append_log(*self._key, self._seq, text, stream=stream)
        except StateStoreError as err:
            # The local file has every line; a store that cannot take the log must not stop the step.
            self._failed = err.message


class AttemptLog:
    """Where an attempt's masked lines go: the local file and the store."""

    def __init__(self, local: AppendLog, stored: StoredLog) -> None:
        self.local = local
        self.stored = stored

    def write(self, line: str) -> None:
        self.local.write(line)
        self.stored.write(line)

    def close(self) -> None:
        self.stored.close()
        self.local.close()
