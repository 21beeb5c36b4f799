"""On-disk cache of Gemini answers, so a re-run of the same request costs nothing.

An entry is keyed by the sha256 of everything that shapes the answer (the exact image bytes sent,
model, prompt text, image size, aspect ratio, request kind, tile box...) and stored as two files in
the cache folder: ``<key>.bin`` (the answer's image, decoded and stored again as a lossless PNG of the
same samples: never bytes that did not decode) and ``<key>.json`` (text, MIME label, finish reason,
model version -- each redacted of the key --, sizes, timestamps). Both are written atomically (temporary name,
then rename; the JSON last, so a half-written entry is never seen). The API key is never part of
the key material nor of the stored data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("aiflat")/gemini``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("aiflat")) / "gemini"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(images: list[bytes], **settings: Any) -> str:
    """The entry name for a request sending ``images`` with ``settings`` (JSON-serialisable)."""
    material = {
        "version": CACHE_VERSION,
        "images": [sha256_hex(b) for b in images],
        "settings": settings,
    }
    return sha256_hex(json.dumps(material, sort_keys=True, default=str).encode("utf-8"))


@dataclass
class CachedAnswer:
    image: bytes
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.meta.get("text") or ""


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AnswerCache:
    """A folder of cached answers. Read/write failures never break a request: a broken entry is a
    miss, a failed write is logged at debug level."""

    def __init__(self, root: Optional[str | os.PathLike] = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.bin", self.root / f"{key}.json"

    def get(self, key: str) -> Optional[CachedAnswer]:
        img_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            image = img_path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("image_sha256") != sha256_hex(image):
            log.debug("cache entry %s is damaged; ignoring it", key[:12])
            return None
        return CachedAnswer(image=image, meta=meta)

    def put(self, key: str, image: bytes, meta: dict[str, Any]) -> bool:
        """Store (or overwrite) an entry. Returns False if the cache folder is not writable."""
        img_path, meta_path = self._paths(key)
        record = dict(meta)
        record.update(key=key, image_sha256=sha256_hex(image), stored_at=time.time(), cache_version=CACHE_VERSION)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write(img_path, image)
            _atomic_write(meta_path, json.dumps(record, indent=1, sort_keys=True, default=str).encode("utf-8"))
            return True
        except OSError as exc:
            log.debug("cannot write cache entry in %s: %s", self.root, exc.strerror or exc)
            return False

    def discard(self, key: str) -> None:
        """Remove one entry (e.g. an answer stored by an older version that no longer decodes)."""
        for p in reversed(self._paths(key)):  # the JSON first: a half-removed entry is a miss
            with contextlib.suppress(OSError):
                p.unlink()

    def entries(self) -> list[str]:
        """Keys of the complete entries."""
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if not p.name.startswith("."))

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        n = 0
        for key in self.entries():
            for p in self._paths(key):
                with contextlib.suppress(OSError):
                    p.unlink()
            n += 1
        return n
