"""The content-addressed image cache: the only state the tool keeps.

An entry is two files named by the job's key: the PNG and a JSON sidecar. The PNG is written
first and the sidecar last, each atomically, so the sidecar marks a complete entry: a build
killed at any moment leaves either a whole entry or none (a stray PNG without its sidecar is
simply rendered again). An entry is only ever replaced when it is found broken.
"""

from __future__ import annotations

import errno
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


def well_formed(side, key: str | None = None) -> bool:
    """A sidecar with the fields an entry's has, of their kinds (and naming `key`, if given): one
    that does not (hand-edited, written by a broken tool) makes its entry broken, never a crash."""
    return (
        isinstance(side, dict)
        and isinstance(side.get("key"), str)
        and (key is None or side["key"] == key)
        and isinstance(side.get("recipe"), dict)
        and isinstance(side.get("made", {}), dict)
        and isinstance(side.get("png"), dict)
        and isinstance(side["png"].get("sha256"), str)
        and type(side["png"].get("bytes")) is int
    )


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
                if not well_formed(side, key):
                    continue
                png = side["png"]
                stat = os.stat(base + ".png")
                if stat.st_size != png["bytes"]:
                    continue
                if png.get("mtime_ns", stat.st_mtime_ns) != stat.st_mtime_ns and not _same_hash(base + ".png", png):
                    continue
                whole[key] = side
            except (OSError, ValueError):
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
            raise self.unwritable(err) from None

    def unwritable(self, err: OSError) -> CacheWriteError:
        """The one message for a cache that cannot be written, with what to do about it."""
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(self.root) else ""
        todo = (
            "free some space"
            if err.errno in (errno.ENOSPC, errno.EDQUOT)
            else "make it writable, or point paths.cache at a folder you can write"
        )
        return CacheWriteError(
            f"cannot write to the cache at {self.root}: {err.strerror or err}{where}; {todo}, and run "
            "again: every image finished before this is kept"
        )

    def sidecar(self, key: str) -> dict:
        return json.loads(self.sidecar_path(key).read_text(encoding="utf-8"))

    def keys(self) -> set[str]:
        """Every key with at least one file in the cache (whole, half or broken)."""
        return {p.stem for p in self.entry_files()}

    def entry_files(self) -> list[Path]:
        """The files in images/*/ named like an entry's (KEY.png, KEY.json), in whichever folder they
        lie; a folder of such a name is nobody's entry and is left out."""
        if not self.images.is_dir():
            return []
        return [p for p in self.images.glob("*/*") if p.suffix in (".png", ".json") and p.is_file()]

    def check(self, key: str, recipe_key) -> str | None:
        """What is wrong with an entry, read in full (None: nothing). `recipe_key` hashes a recipe."""
        png, side_path = self.png_path(key), self.sidecar_path(key)
        if not side_path.is_file():
            return "PNG without its sidecar" if png.is_file() else "missing"
        try:
            side = self.sidecar(key)
        except ValueError:
            return "sidecar is not readable JSON"
        if not well_formed(side):
            return "sidecar is not an entry's (a field missing or of the wrong kind)"
        expected = side["png"]
        if side["key"] != key or recipe_key(side["recipe"]) != key:
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

    def prune(self, keep: set[str], *, delete: bool) -> tuple[int, int]:
        """(entries, bytes) of the entry files whose key is not in `keep`: removed where `delete`, else
        only counted; what another process removed first does not count. Call while holding the lock."""
        keys, total = set(), 0
        for path in self.entry_files():
            if path.stem in keep:
                continue
            try:
                size = path.stat().st_size
                if delete:
                    path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                raise self.unwritable(err) from None
            keys.add(path.stem)
            total += size
        return len(keys), total

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
        """Hold the build lock; if another build holds it, call `on_wait` once and wait for it.
        A cache that cannot be written (read-only, in /proc ...) is one message, before any work."""
        lock = FileLock(str(self.root / LOCK_NAME))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire(timeout=0)
            except Timeout:  # an OSError too: caught first
                if on_wait:
                    on_wait()
                lock.acquire()
        except OSError as err:
            raise self.unwritable(err) from None
        try:
            yield
        finally:
            lock.release()


def _same_hash(path: str, png: dict) -> bool:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest() == png.get("sha256")
