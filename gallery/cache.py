"""The content-addressed image cache: the only state the tool keeps.

An entry is two files named by the job's key: the PNG and a JSON sidecar. The PNG is written
first and the sidecar last, each atomically, so the sidecar marks a complete entry: a build
killed at any moment leaves either a whole entry or none (a stray PNG without its sidecar is
simply rendered again). Entries are never modified, only added.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock, Timeout

from gallery.fsutil import atomic_write_bytes

LOCK_NAME = "build.lock"


class Cache:
    def __init__(self, root: Path):
        self.root = root
        self.images = root / "images"

    def png_path(self, key: str) -> Path:
        return self.images / key[:2] / f"{key}.png"

    def sidecar_path(self, key: str) -> Path:
        return self.images / key[:2] / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.sidecar_path(key).is_file() and self.png_path(key).is_file()

    def missing(self, jobs: Iterable) -> list:
        return [job for job in jobs if not self.has(job.key)]

    def put(self, key: str, png: bytes, sidecar: dict) -> None:
        atomic_write_bytes(self.png_path(key), png, durable=True)
        atomic_write_bytes(self.sidecar_path(key), (json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n")
                           .encode("utf-8"), durable=True)

    def sidecar(self, key: str) -> dict:
        return json.loads(self.sidecar_path(key).read_text(encoding="utf-8"))

    @contextmanager
    def locked(self, on_wait=None) -> Iterator[None]:
        """Hold the build lock; if another build holds it, call `on_wait` once and wait for it."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait:
                on_wait()
            lock.acquire()
        try:
            yield
        finally:
            lock.release()
