"""The content-addressed image cache: the only state the tool keeps.

An entry is two files named by the job's key: the PNG and a JSON sidecar. The PNG is written
first and the sidecar last, each atomically, so the sidecar marks a complete entry: a build
killed at any moment leaves either a whole entry or none (a stray PNG without its sidecar is
simply rendered again). An entry is only ever replaced when it is found broken.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from gallery.errors import CacheWriteError
from gallery.fsutil import TEMP_PREFIX, atomic_write_bytes

LOCK_NAME = "build.lock"


class Cache:
    def __init__(self, root: Path):
        self.root = root
        self.images = root / "images"
        self.quarantine = root / "quarantine"

    def png_path(self, key: str) -> Path:
        return self.images / key[:2] / f"{key}.png"

    def sidecar_path(self, key: str) -> Path:
        return self.images / key[:2] / f"{key}.json"

    def missing(self, jobs: Iterable) -> list:
        whole = self.whole_entries(job.key for job in jobs)
        return [job for job in jobs if job.key not in whole]

    def whole_entries(self, keys: Iterable[str]) -> dict[str, dict]:
        """key -> sidecar of every whole entry among `keys`: both files, a sidecar that names its key,
        a PNG of the recorded size and, where its time of writing differs from the recorded one (the
        file was changed, or copied), of the recorded SHA-256. Cheap (a stat and a small JSON each)
        so a fully cached build stays fast; `check` (gallery verify) decodes too. Plain string
        paths: for thousands of entries pathlib's overhead would dominate."""
        root = str(self.images)
        whole = {}
        for key in keys:
            base = os.path.join(root, key[:2], key)
            try:
                with open(base + ".json", "rb") as f:
                    side = json.loads(f.read())
                png = side["png"]
                stat = os.stat(base + ".png")
                if side.get("key") != key or stat.st_size != png["bytes"]:
                    continue
                if png.get("mtime_ns", stat.st_mtime_ns) != stat.st_mtime_ns and not _same_hash(base + ".png", png):
                    continue
                whole[key] = side
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        return whole

    def put(self, key: str, png: bytes, sidecar: dict) -> None:
        """Store an entry; the sidecar gets the PNG's SHA-256 and size, which `whole_entries` and `check` read."""
        sidecar = dict(
            sidecar, png={**sidecar.get("png", {}), "sha256": hashlib.sha256(png).hexdigest(), "bytes": len(png)}
        )
        try:
            atomic_write_bytes(self.png_path(key), png, durable=True)
            sidecar["png"]["mtime_ns"] = self.png_path(key).stat().st_mtime_ns  # a later change shows in a stat
            atomic_write_bytes(
                self.sidecar_path(key),
                (json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
                durable=True,
            )
        except OSError as err:  # disk full, read-only, permissions: the temp file is already gone
            raise CacheWriteError(
                f"cannot write to the cache at {self.root}: {err.strerror or err}. Free space or "
                "fix permissions and run again; every image finished before this is kept"
            ) from None

    def sidecar(self, key: str) -> dict:
        return json.loads(self.sidecar_path(key).read_text(encoding="utf-8"))

    def keys(self) -> set[str]:
        """Every key with at least one file in the cache (whole, half or broken)."""
        if not self.images.is_dir():
            return set()
        return {p.stem for p in self.images.glob("*/*") if p.suffix in (".png", ".json")}

    def check(self, key: str, recipe_key) -> str | None:
        """What is wrong with an entry, read in full (None: nothing). `recipe_key` hashes a recipe."""
        png, side_path = self.png_path(key), self.sidecar_path(key)
        if not side_path.is_file():
            return "PNG without its sidecar" if png.is_file() else "missing"
        try:
            side = self.sidecar(key)
            expected = side["png"]
        except (ValueError, KeyError, TypeError):
            return "sidecar is not readable JSON of an entry"
        if side.get("key") != key or recipe_key(side.get("recipe", {})) != key:
            return "sidecar belongs to another image"
        if not png.is_file():
            return "sidecar without its PNG"
        data = png.read_bytes()
        if len(data) != expected.get("bytes") or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            return "PNG does not match its sidecar (truncated or changed)"
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except Exception as err:  # Pillow raises many kinds for a broken file
            return f"PNG does not decode ({type(err).__name__})"
        return None

    def set_aside(self, key: str) -> None:
        """Move a broken entry out of the way (kept for inspection), so the next build renders it."""
        folder = self.quarantine / time.strftime("%Y%m%d-%H%M%S")
        for path in (self.png_path(key), self.sidecar_path(key)):
            if path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), folder / path.name)

    def entry_bytes(self, key: str) -> int:
        return sum(p.stat().st_size for p in (self.png_path(key), self.sidecar_path(key)) if p.exists())

    def remove(self, key: str) -> int:
        """Delete an entry; return the bytes freed."""
        freed = self.entry_bytes(key)
        for path in (self.png_path(key), self.sidecar_path(key)):
            path.unlink(missing_ok=True)
        return freed

    def clean_temp_files(self) -> int:
        """Temp files left by a killed writer; call only while holding the build lock."""
        count = 0
        if self.images.is_dir():
            for tmp in self.images.glob(f"*/{TEMP_PREFIX}*"):
                tmp.unlink(missing_ok=True)
                count += 1
        return count

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


def _same_hash(path: str, png: dict) -> bool:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest() == png.get("sha256")
