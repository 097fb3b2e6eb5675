"""Atomic file writes: a reader (or a resumed run) sees the old file or the complete new one.

The new content goes to a hidden temp file in the destination's directory (same filesystem, so
``os.replace`` is an atomic rename), is flushed and fsync'ed, then renamed onto the destination;
the directory is fsync'ed so the rename survives a power cut. A process killed at any point
leaves the destination as it was, plus at most one stale ``.<name>.tmp-<pid>`` file.

Test hook: ``ODEDET_TEST_STALL_SAVE="<basename>:<seconds>"`` makes the write of that file pause
for ``<seconds>`` after its first bytes are on disk, so a test can SIGKILL the writer mid-write.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch

logger = logging.getLogger(__name__)

TEMP_MARKER = ".tmp-"
STALL_ENV = "ODEDET_TEST_STALL_SAVE"


def _temp_path(path: str) -> str:
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}{TEMP_MARKER}{os.getpid()}")


def stale_temp_files(directory: str) -> list[str]:
    """Temp files left in ``directory`` by interrupted atomic writes."""
    return sorted(
        os.path.join(directory, f)
        for f in os.listdir(directory)
        if f.startswith(".") and TEMP_MARKER in f
    )


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _StallingWriter:
    """File wrapper for the test hook: pauses once, after the first bytes are durable."""

    def __init__(self, f, seconds: float):
        self._f, self._seconds, self._stalled = f, seconds, False

    def write(self, data) -> int:
        n = self._f.write(data)
        if not self._stalled and self._f.tell() > 0:
            self._stalled = True
            self._f.flush()
            os.fsync(self._f.fileno())
            logger.warning(f"{STALL_ENV}: stalling {self._seconds:g}s mid-write of {self._f.name}")
            time.sleep(self._seconds)
        return n

    def flush(self) -> None:
        self._f.flush()


def _stall_seconds(path: str) -> float:
    spec = os.environ.get(STALL_ENV, "")
    name, _, seconds = spec.rpartition(":")
    if name and name == os.path.basename(path):
        return float(seconds)
    return 0.0


def _atomic_write(path: str, write_fn) -> None:
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, atomically (module docstring)."""
    stall = _stall_seconds(path)

    def write(f):
        torch.save(obj, _StallingWriter(f, stall) if stall else f)

    _atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> None:
    """Replace the text file ``path`` with ``text``, atomically."""
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
