"""A model's identity for the cache key: hub id + revision, or a content hash of local files.

Hashing a multi-GB local model takes seconds, so each file's digest is remembered by
(path, size, mtime) in a small JSON beside the cache; an unchanged model costs a few stats.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from gallery.fsutil import atomic_write_bytes

MEMO_NAME = "fingerprints.json"


def model_identities(models: set[tuple[str, str | None]], memo: Memo) -> dict[tuple[str, str | None], str]:
    """Identity of each (model, revision): local models by content, hub models by id and revision."""
    identities = {}
    for model, revision in sorted(models, key=str):
        if model.startswith("/"):
            identities[(model, revision)] = "sha256:" + local_fingerprint(Path(model), memo)
            prior = connected_prior(Path(model))
            if prior:  # a decoder renders with the prior its card names: part of the model (model cards are not hashed)
                identities[(model, revision)] += " prior:" + (
                    "sha256:" + local_fingerprint(Path(prior), memo) if prior.startswith("/") else f"hub:{prior}@main"
                )
        else:
            identities[(model, revision)] = f"hub:{model}@{revision or 'main'}"
    return identities


def connected_prior(folder: Path) -> str | None:
    """The prior a local decoder-only model's card names (README.md front matter `prior: [id]`, as
    kandinsky-community/kandinsky-2-2-decoder's has), which diffusers loads with it; else None."""
    import yaml

    card = folder / "README.md"
    try:
        text = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
        front = yaml.safe_load(text[3:].split("\n---", 1)[0]) if text.startswith("---") else None
    except (OSError, yaml.YAMLError):
        return None
    prior = front.get("prior") if isinstance(front, dict) else None
    return prior[0] if isinstance(prior, list) and prior and isinstance(prior[0], str) else None


def lora_identities(loras: set[tuple[str, str | None]], memo: Memo) -> dict[tuple[str, str | None], str]:
    """Identity of each LoRA file (path or owner/repo/file, revision): a local file by its content
    alone (renaming it re-renders nothing), a hub file by its path and revision."""
    return {
        (model, revision): f"sha256:{memo.digest(Path(model))}"
        if model.startswith("/")
        else f"hub:{model}@{revision or 'main'}"
        for model, revision in loras
    }


def local_fingerprint(path: Path, memo: Memo) -> str:
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.suffix.lower() not in (".md", ".lock")
        )
    )
    outer = hashlib.sha256()
    for file in files:
        rel = file.name if file == path else file.relative_to(path).as_posix()
        outer.update(f"{rel}\0{memo.digest(file)}\n".encode())
    return outer.hexdigest()


class Memo:
    """File digests remembered by (size, mtime), kept in the cache folder."""

    def __init__(self, cache_dir: Path):
        self.path = cache_dir / MEMO_NAME
        self.changed = False
        try:
            self.entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}
        if not isinstance(self.entries, dict):  # damaged (`[]`, a number ...): forgotten, rewritten on save
            self.entries, self.changed = {}, True

    def digest(self, file: Path) -> str:
        st = file.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        entry = self.entries.get(str(file))
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        self.entries[str(file)] = {"stamp": stamp, "sha256": h.hexdigest()}
        self.changed = True
        return h.hexdigest()

    def save(self) -> None:
        """Remember the digests, if the cache folder exists (never created just for this). Only an
        optimisation: where it cannot be written (a read-only cache) the next run hashes again."""
        if self.changed and self.path.parent.is_dir():
            with contextlib.suppress(OSError):
                atomic_write_bytes(self.path, json.dumps(self.entries, indent=0).encode())
            self.changed = False
