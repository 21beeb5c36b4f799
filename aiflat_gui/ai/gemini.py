"""The Gemini mask provider: an image model finds the dust, and only ever returns a mask.

The real ``google-genai`` client does the talking (no hand-written HTTP). One request:

1. the reference is stretched to 8-bit (robust percentiles; Bayer data demosaiced), split into
   overlapping tiles when it is larger than the model returns at full detail, each tile padded
   (black, centred) to the nearest aspect ratio Gemini supports and encoded as PNG;
2. ``generate_content`` is called with the PNG and the prompt and
   ``GenerateContentConfig(response_modalities=["TEXT", "IMAGE"], image_config=ImageConfig(...))``
   through the *async* client in a private event loop on a helper thread, so the caller's
   ``progress`` callback is polled every 0.1 s and may cancel (raise ``Cancelled``) at any moment;
   429/5xx/timeouts are retried with exponential backoff, a bounded number of times;
3. the answer is read robustly (last non-thought image part, else the last image part; decoded by
   content, not by its MIME label), resampled to the padded size, cropped, stitched (max over
   tiles) and thresholded. Text-only answers and safety blocks become a one-line
   :class:`ProcessingError` quoting the model.

Every answer is cached on disk (:mod:`aiflat_gui.ai.cache`); ``reroll=True`` asks again and
overwrites the entry. The API key (:mod:`aiflat_gui.ai.keys`) never appears in reports, cache files,
log records or exception messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import Cancelled, InputError, ProcessingError
from ..progress import ProgressFn, report, sub_progress
from . import imageprep as ip
from .base import MaskResult
from .cache import AnswerCache, cache_key, sha256_hex
from .keys import NO_KEY_MESSAGE, get_api_key, redact

log = logging.getLogger(__name__)

#: Model ids offered in the GUI/CLI (any other id is accepted as is).
MODELS = ("gemini-3-pro-image", "gemini-3.1-flash-image", "gemini-2.5-flash-image")
DEFAULT_MODEL = MODELS[0]
IMAGE_SIZES = ("1K", "2K", "4K")

#: Estimated price per request in USD: (output image at 1K, 2K, 4K) + input image.
#: Sources/assumptions (Google AI pricing page, paid tier, late 2025 / early 2026; check
#: https://ai.google.dev/gemini-api/docs/pricing for today's figures):
#: - gemini-3-pro-image: output images $120 per 1M tokens; a 1K or 2K image is 1120 tokens
#:   (~$0.134), a 4K image 2000 tokens ($0.24); an input image ~560 tokens at $2 per 1M (~$0.0011).
#: - gemini-3.1-flash-image: output $60 per 1M tokens: 1K 1120 tokens ($0.067), 2K 1680 ($0.101),
#:   4K 2520 ($0.151); input image ~$0.0003.
#: - gemini-2.5-flash-image: $30 per 1M output tokens, 1290 tokens per image ($0.039); it only
#:   answers at about 1K, whatever size is asked; input ~$0.0002.
#: - any other model: priced like gemini-3-pro-image (a deliberate over-estimate).
#: Text tokens (prompt and the model's short reply) add well under a cent and are ignored.
PRICES = {
    "gemini-3-pro-image": ({"1K": 0.134, "2K": 0.134, "4K": 0.24}, 0.0011),
    "gemini-3.1-flash-image": ({"1K": 0.067, "2K": 0.101, "4K": 0.151}, 0.0003),
    "gemini-2.5-flash-image": ({"1K": 0.039, "2K": 0.039, "4K": 0.039}, 0.0002),
}

#: Automatic tiling: a frame (tile) is sent whole while its long side is at most this many times
#: the answer's long side (a 2x downscale keeps 3-px dust visible and the engine grows the mask
#: anyway); larger frames are split into overlapping tiles.
DETAIL_FACTOR = 2.0

#: HTTP codes worth retrying: timeout, quota/rate limit, server trouble.
RETRY_CODES = (408, 429, 500, 502, 503, 504)
#: Finish reasons that mean "no picture for you" (the SDK's FinishReason names).
BLOCK_FINISH = ("SAFETY", "IMAGE_SAFETY", "NO_IMAGE", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT",
                "RECITATION", "IMAGE_RECITATION", "BLOCKLIST", "SPII", "IMAGE_OTHER", "OTHER",
                "MAX_TOKENS", "LANGUAGE", "MALFORMED_RESPONSE")


def _base_model(model: str) -> str:
    m = model.split("/")[-1]
    for known in PRICES:
        if m == known or m.startswith(known + "-"):
            return known
    return m


def only_1k(model: str) -> bool:
    """Models that ignore/reject ``image_size`` (the 2.5 flash image model answers at ~1K)."""
    return _base_model(model).startswith("gemini-2.5")


def estimate_cost(model: str, image_size: str = "1K", n_images: int = 1) -> float:
    """Estimated USD for ``n_images`` requests (one input image each, one image back). See
    :data:`PRICES` for sources and assumptions."""
    out, inp = PRICES.get(_base_model(model), PRICES[DEFAULT_MODEL])
    per = out.get(image_size, out["1K"]) + inp
    return round(per * max(0, int(n_images)), 4)


def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


@dataclass
class _Tile:
    box: tuple[int, int, int, int]          # y0, y1, x0, x1 in the frame
    aspect: str
    padded_hw: tuple[int, int]
    offset: tuple[int, int]
    pngs: list[bytes]                       # images sent (reference tile, [mask tile])


@dataclass
class _Answer:
    image: bytes
    mime: str
    text: str
    finish_reason: Optional[str]
    model_version: Optional[str]
    cached: bool
    seconds: float = 0.0
    attempts: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


class GeminiProvider:
    """Dust masks (and AI "clean" images) from a Gemini image model.

    Parameters (the CLI passes ``model``, ``prompt_file``, ``image_size``, ``timeout``, ``cache_dir``,
    ``reroll``):

    model: any model id; :data:`MODELS` are offered. prompt / prompt_file: the prompt text, used as
    is (default ``resources/prompts/mask.txt``). image_size: ``1K``, ``2K`` or ``4K``. timeout:
    seconds per attempt. api_key: explicit key (else env/keyring, see :mod:`keys`). cache_dir:
    answer cache (default ``platformdirs.user_cache_dir("aiflat")/gemini``). reroll: ask again even
    when an answer is cached (and overwrite it). retries: extra attempts after the first on
    429/5xx/timeouts. threshold: soft-mask level (0..1) counted as dust. tile: ``None`` = tile only
    when the frame exceeds :data:`DETAIL_FACTOR` times the answer's size; an int = maximum tile side in pixels;
    ``0`` = never tile. base_url: another endpoint (else the SDK's ``GOOGLE_GEMINI_BASE_URL``).
    stream: use ``streamGenerateContent`` (server-sent events) instead of one JSON answer.
    backoff / max_backoff: first and largest wait between attempts in seconds.
    clean_prompt / clean_prompt_file: prompt for :meth:`request_clean` (default ``clean.txt``).
    with_clean: :meth:`find_mask` also asks for the AI "clean" image (a second request per tile,
    with the mask grown by ``clean_grow`` px) and returns it as ``MaskResult.clean`` for the
    engine's ``ai`` flat method.
    """

    name = "gemini"

    def __init__(self, model: str = DEFAULT_MODEL, prompt_file: Optional[str] = None, prompt: Optional[str] = None,
                 image_size: str = "1K", timeout: float = 120.0, api_key: Optional[str] = None,
                 cache_dir: Optional[str] = None, reroll: bool = False, retries: int = 3,
                 threshold: float = 0.5, tile: Optional[int] = None, base_url: Optional[str] = None,
                 stream: bool = False, backoff: float = 2.0, max_backoff: float = 30.0,
                 clean_prompt: Optional[str] = None, clean_prompt_file: Optional[str] = None,
                 overlap: int = 64, with_clean: bool = False, clean_grow: int = 4):
        self.model = (model or DEFAULT_MODEL).strip()
        if not self.model:
            raise InputError("empty Gemini model id")
        size = str(image_size or "1K").upper()
        if size not in IMAGE_SIZES:
            raise InputError(f"unknown image size '{image_size}' (choose from {', '.join(IMAGE_SIZES)})")
        self.image_size = size
        if timeout is None or not float(timeout) > 0:
            raise InputError(f"Gemini timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)
        if not 0.0 < float(threshold) < 1.0:
            raise InputError(f"mask threshold must be between 0 and 1, not {threshold!r}")
        self.threshold = float(threshold)
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.max_backoff = max(self.backoff, float(max_backoff))
        self.tile = tile
        self.overlap = max(0, int(overlap))
        self.reroll = bool(reroll)
        self.with_clean = bool(with_clean)
        self.clean_grow = max(0, int(clean_grow))
        self.stream = bool(stream)
        self.base_url = base_url
        self._explicit_key = api_key
        self.cache = AnswerCache(cache_dir)
        self.prompt, self.prompt_name = self._load_prompt(prompt, prompt_file, "mask.txt")
        self.clean_prompt, self.clean_prompt_name = self._load_prompt(clean_prompt, clean_prompt_file, "clean.txt")
        self._client = None  # kept alive while a request runs
        self.last_report: dict[str, Any] = {}

    # -- prompts -----------------------------------------------------------------------------------
    @staticmethod
    def _load_prompt(text: Optional[str], path: Optional[str], builtin: str) -> tuple[str, str]:
        if text is not None and str(text).strip():
            return str(text), "custom"
        if path:
            from ..io.inputs import read_text

            p = Path(path)
            if not os.path.lexists(p):
                raise InputError("prompt file not found", p)
            content = read_text(p)  # refuses FIFOs, devices (/dev/zero) and files over 1 MB
            if not content.strip():
                raise InputError("prompt file is empty", p)
            return content, p.name
        from ..resources import resource_path

        p = resource_path("prompts", builtin)
        try:
            return p.read_text(encoding="utf-8"), builtin
        except OSError:
            raise ProcessingError("built-in prompt is missing from the installation", p) from None

    # -- planning ----------------------------------------------------------------------------------
    @property
    def effective_size(self) -> str:
        return "1K" if only_1k(self.model) else self.image_size

    def _max_tile_side(self, height: int, width: int) -> int:
        if self.tile is not None:
            return max(height, width) if int(self.tile) <= 0 else max(64, int(self.tile))
        ow, oh = ip.output_size(ip.nearest_aspect(width, height), self.effective_size)
        return int(DETAIL_FACTOR * max(ow, oh))

    def _plan(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        side = self._max_tile_side(height, width)
        overlap = min(self.overlap, side // 4)
        return ip.plan_tiles(height, width, side, overlap)

    def describe_request(self, reference: np.ndarray, sequence: Any = None) -> dict[str, Any]:
        """What :meth:`find_mask` would send, without sending it (no key or network needed): model,
        output size, tiles, requests, estimated cost of a fresh request, and whether the mask answer
        is already cached (then a run without re-roll is free)."""
        h, w = np.asarray(reference).shape[:2]
        boxes = self._plan(h, w)
        tiles = []
        for (y0, y1, x0, x1) in boxes:
            aspect = ip.nearest_aspect(x1 - x0, y1 - y0)
            ph, pw = ip.padded_shape(y1 - y0, x1 - x0, aspect)
            ow, oh = ip.output_size(aspect, self.effective_size)
            tiles.append({"box": [y0, y1, x0, x1], "aspect_ratio": aspect, "padded": [pw, ph], "output": [ow, oh]})
        n_requests = len(boxes) * (2 if self.with_clean else 1)
        cost = estimate_cost(self.model, self.effective_size, n_requests)
        cached_tiles = 0
        if reference is not None and np.asarray(reference).ndim in (2, 3):
            u8, _s, _l = ip.to_model_image(np.asarray(reference), getattr(sequence, "color", None))
            for box in boxes:
                tile = self._tile(box, [u8])
                if self.cache.get(cache_key(tile.pngs, **self._settings("mask", tile, self.prompt))) is not None:
                    cached_tiles += 1
        cached = cached_tiles == len(boxes) and not self.reroll
        first = tiles[0]
        summary = (f"{self.model}, {self.effective_size} ({first['output'][0]}x{first['output'][1]}, "
                   f"{first['aspect_ratio']}), {n_requests} request{'s' if n_requests != 1 else ''}, "
                   f"about ${cost:.2f}" + (" (answer cached: free)" if cached else ""))
        return {
            "provider": self.name,
            "model": self.model,
            "image_size": self.effective_size,
            "frame": [w, h],
            "aspect_ratio": first["aspect_ratio"],
            "output_size": first["output"],
            "tiles": len(boxes),
            "tile_boxes": tiles,
            "requests": n_requests,
            "estimated_cost_usd": cost,
            "cached": cached,
            "cached_tiles": cached_tiles,
            "summary": summary,
        }

    # -- public API ----------------------------------------------------------------------------
    def find_mask(self, reference: np.ndarray, sequence: Any = None,
                  progress: Optional[ProgressFn] = None) -> MaskResult:
        """Ask the model for a dust mask of ``reference`` (float (H, W) or (H, W, C))."""
        t0 = time.monotonic()
        key = self._require_key()
        ref = self._check_reference(reference)
        color = getattr(sequence, "color", None)
        u8, _stretch, layout = ip.to_model_image(ref, color)
        h, w = ref.shape[:2]
        boxes = self._plan(h, w)
        report(progress, 0.0, f"asking {self.model} for a dust mask")
        mask_progress = sub_progress(progress, 0.0, 0.5) if self.with_clean else progress
        soft = np.zeros((h, w), np.float32)
        answers, inverted = [], 0
        for i, box in enumerate(boxes):
            tile = self._tile(box, [u8])
            sub = sub_progress(mask_progress, i / len(boxes), (i + 1) / len(boxes))
            ans, img = self._ask_image("mask", tile, self.prompt, key, sub, i, len(boxes))
            m = ip.mask_channel(img)
            if float(m.mean()) > 0.5:  # mostly white: the model drew black dust on white
                m = 1.0 - m
                inverted += 1
            y0, y1, x0, x1 = box
            part = ip.fit_answer(m, tile.padded_hw, tile.offset, (y1 - y0, x1 - x0))
            np.maximum(soft[y0:y1, x0:x1], part, out=soft[y0:y1, x0:x1])
            answers.append((tile, ans, img.shape))
        mask = soft >= np.float32(self.threshold)
        rep = self._report("mask", answers, t0, layout)
        rep["threshold"] = self.threshold
        rep["dust_pixels"] = int(mask.sum())
        rep["inverted_tiles"] = inverted
        clean = None
        if self.with_clean:
            report(progress, 0.5, "mask received")
            sent = mask
            if self.clean_grow and mask.any():
                from ..core.mask import grow

                sent = grow(mask, int(self.clean_grow))
            clean = self.request_clean(ref, sent, sub_progress(progress, 0.5, 1.0), sequence=sequence)
            crep = self.last_report
            rep["clean"] = {k: crep[k] for k in ("seconds", "requests_sent", "estimated_cost_usd", "cache_hit",
                                                 "text", "returned_size", "returned_format")}
            rep["estimated_cost_usd"] = round(rep["estimated_cost_usd"] + crep["estimated_cost_usd"], 4)
            rep["seconds"] = round(time.monotonic() - t0, 2)
        report(progress, 1.0, "mask received")
        self.last_report = rep
        return MaskResult(mask=mask, soft=np.clip(soft, 0.0, 1.0), report=rep, clean=clean)

    def request_clean(self, reference: np.ndarray, mask: np.ndarray, progress: Optional[ProgressFn] = None,
                      sequence: Any = None) -> np.ndarray:
        """Ask the model for a dust-free version of ``reference`` (the mask sent as a second image,
        as grapeot/ai_flatfield did). Returns float32 shaped like ``reference`` in its scale (the
        8-bit stretch inverted approximately; the engine histogram-matches anyway)."""
        t0 = time.monotonic()
        key = self._require_key()
        ref = self._check_reference(reference)
        mask = np.asarray(mask)
        if mask.shape[:2] != ref.shape[:2]:
            raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the reference is {ref.shape[1]}x{ref.shape[0]}")
        mask8 = np.where(mask.reshape(mask.shape[:2]) > 0, 255, 0).astype(np.uint8)
        color = getattr(sequence, "color", None)
        u8, stretch, layout = ip.to_model_image(ref, color)
        h, w = ref.shape[:2]
        boxes = self._plan(h, w)
        channels = 3 if u8.ndim == 3 else 1
        acc = np.zeros((h, w, channels), np.float32)
        wsum = np.zeros((h, w, 1), np.float32)
        answers = []
        report(progress, 0.0, f"asking {self.model} for a clean image")
        for i, box in enumerate(boxes):
            tile = self._tile(box, [u8, mask8])
            sub = sub_progress(progress, i / len(boxes), (i + 1) / len(boxes))
            ans, img = self._ask_image("clean", tile, self.clean_prompt, key, sub, i, len(boxes))
            if channels == 1 and img.ndim == 3:
                img = img.mean(axis=2)
            elif channels == 3 and img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            y0, y1, x0, x1 = box
            part = ip.fit_answer(img, tile.padded_hw, tile.offset, (y1 - y0, x1 - x0)).reshape(y1 - y0, x1 - x0, channels)
            wt = ip.blend_weights(y1 - y0, x1 - x0, box, (h, w), max(1, self.overlap // 2))[..., None]
            acc[y0:y1, x0:x1] += part * wt
            wsum[y0:y1, x0:x1] += wt
            answers.append((tile, ans, img.shape))
        unit = acc / np.maximum(wsum, 1e-6)
        unit = unit[..., 0] if channels == 1 else unit
        clean = ip.from_model_image(unit, layout, stretch)
        if ref.ndim == 3 and clean.ndim == 2:
            clean = np.repeat(clean[..., None], ref.shape[2], axis=2)
        elif ref.ndim == 3 and clean.shape[2] != ref.shape[2]:
            clean = np.concatenate([clean, ref[..., 3:].astype(np.float32)], axis=2)
        self.last_report = self._report("clean", answers, t0, layout)
        report(progress, 1.0, "clean image received")
        return clean.astype(np.float32)

    # -- helpers -------------------------------------------------------------------------------
    def _require_key(self) -> str:
        key = get_api_key(self._explicit_key)
        if not key:
            raise InputError(NO_KEY_MESSAGE)
        return key

    @staticmethod
    def _check_reference(reference: np.ndarray) -> np.ndarray:
        ref = np.asarray(reference)
        if ref.ndim not in (2, 3) or ref.shape[0] < 2 or ref.shape[1] < 2:
            raise InputError(f"reference must be an (H, W) or (H, W, C) image, got shape {ref.shape}")
        return ref

    def _tile(self, box: tuple[int, int, int, int], images: list[np.ndarray]) -> _Tile:
        y0, y1, x0, x1 = box
        aspect = ip.nearest_aspect(x1 - x0, y1 - y0)
        pngs, padded_hw, offset = [], (y1 - y0, x1 - x0), (0, 0)
        for img in images:
            padded, offset = ip.pad_to_aspect(img[y0:y1, x0:x1], aspect)
            padded_hw = padded.shape[:2]
            pngs.append(ip.encode_png(padded))
        return _Tile(box=box, aspect=aspect, padded_hw=padded_hw, offset=offset, pngs=pngs)

    def _settings(self, kind: str, tile: _Tile, prompt: str) -> dict[str, Any]:
        return {"kind": kind, "model": self.model, "prompt": prompt, "image_size": self.effective_size,
                "aspect_ratio": tile.aspect, "box": list(tile.box), "padded": list(tile.padded_hw)}

    def _ask_image(self, kind, tile, prompt, key, progress, i: int, n: int):
        """Ask for tile ``i`` of ``n`` and decode the answer by content: (answer, image array).
        Only an answer that decoded is cached (as the decoded samples, see :meth:`_store`); a cached
        entry that does not decode (written by an older version) is dropped and asked again."""
        label = f"tile {i + 1}/{n}" if n > 1 else ""
        ckey = cache_key(tile.pngs, **self._settings(kind, tile, prompt))
        ans = self._ask(kind, tile, prompt, key, progress, label=label)
        img = ip.decode_answer(ans.image)
        if img is None and ans.cached:
            self.cache.discard(ckey)
            ans = self._ask(kind, tile, prompt, key, progress, label=label, use_cache=False)
            img = ip.decode_answer(ans.image)
        if img is None:
            raise ProcessingError(f"Gemini ({self.model}) returned image bytes that cannot be decoded "
                                  f"({redact(ans.mime, key)}, {len(ans.image)} bytes); nothing was cached")
        if not ans.cached:
            self._store(ckey, ans)
        return ans, img

    def _store(self, ckey: str, ans: "_Answer") -> None:
        png = ip.canonical_png(ans.image)
        if png is None:
            return
        meta = dict(ans.meta, stored="decoded", format=ip.sniff_format(png))
        self.cache.put(ckey, png, meta)

    def _ask(self, kind: str, tile: _Tile, prompt: str, key: str, progress: Optional[ProgressFn],
             label: str = "", use_cache: bool = True) -> _Answer:
        ckey = cache_key(tile.pngs, **self._settings(kind, tile, prompt))
        if not self.reroll and use_cache:
            hit = self.cache.get(ckey)
            if hit is not None and key and redact(json.dumps(hit.meta, default=str), key) != json.dumps(hit.meta, default=str):
                self.cache.discard(ckey)  # an older version stored the key (echoed by a proxy): never replay it
                hit = None
            if hit is not None:
                log.debug("gemini %s: cache hit %s", kind, ckey[:12])
                report(progress, 1.0, "answer from cache")
                return _Answer(image=hit.image, mime=hit.meta.get("mime", ""), text=hit.text,
                               finish_reason=hit.meta.get("finish_reason"), model_version=hit.meta.get("model_version"),
                               cached=True, meta=hit.meta)
        ans = self._request(tile, prompt, key, progress, label)
        meta = {"kind": kind, "model": self.model, "image_size": self.effective_size, "aspect_ratio": tile.aspect,
                "box": list(tile.box), "prompt_sha256": sha256_hex(prompt.encode("utf-8")), "mime": ans.mime,
                "text": ans.text, "finish_reason": ans.finish_reason, "model_version": ans.model_version,
                "seconds": round(ans.seconds, 2), "format": ip.sniff_format(ans.image)}
        ans.meta = meta  # stored by _ask_image once the image decoded
        return ans

    # -- the network part ----------------------------------------------------------------------
    def _make_client(self, key: str):
        from google import genai
        from google.genai import types

        opts: dict[str, Any] = {"timeout": int(round(self.timeout * 1000))}
        if self.base_url:
            opts["base_url"] = self.base_url
        try:
            return genai.Client(api_key=key, http_options=types.HttpOptions(**opts))
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed base URL
            raise ProcessingError(f"cannot set up the Gemini client: {_one_line(redact(exc, key))}") from None

    def _request(self, tile: _Tile, prompt: str, key: str, progress: Optional[ProgressFn], label: str) -> _Answer:
        from google.genai import types

        contents: list[Any] = [types.Part.from_bytes(data=png, mime_type="image/png") for png in tile.pngs]
        contents.append(prompt)
        image_size = None if only_1k(self.model) else self.effective_size  # None: the 1K-only models
        config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"],
                                             image_config=types.ImageConfig(aspect_ratio=tile.aspect,
                                                                            image_size=image_size))
        client = self._make_client(key)
        self._client = client
        status = {"message": f"waiting for {self.model}", "attempt": 1}
        attempts = self.retries + 1
        log.debug("gemini request: model=%s aspect=%s size=%s images=%d bytes=%d stream=%s", self.model,
                  tile.aspect, image_size or "-", len(tile.pngs), sum(map(len, tile.pngs)), self.stream)

        async def one_call() -> _Collected:
            if not self.stream:
                resp = await client.aio.models.generate_content(model=self.model, contents=contents, config=config)
                return _collect([resp])
            chunks = []
            async for chunk in await client.aio.models.generate_content_stream(
                    model=self.model, contents=contents, config=config):
                chunks.append(chunk)
            return _collect(chunks)

        async def with_retries() -> tuple[_Collected, int]:
            last: Optional[BaseException] = None
            try:
                for attempt in range(1, attempts + 1):
                    status["attempt"] = attempt
                    status["message"] = f"waiting for {self.model}" + (f" (attempt {attempt}/{attempts})" if attempt > 1 else "")
                    try:
                        return await asyncio.wait_for(one_call(), timeout=self.timeout + 1.0), attempt
                    except BaseException as exc:  # noqa: BLE001 - sorted below
                        if isinstance(exc, asyncio.CancelledError) or not _retriable(exc):
                            raise
                        last = exc
                        if attempt == attempts:
                            break
                        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
                        hint = _retry_delay_hint(exc)
                        if hint is not None:
                            delay = min(self.max_backoff, max(delay, hint))
                        log.info("gemini: %s; retrying in %.1f s (attempt %d of %d)",
                                 redact(_describe_exc(exc), key), delay, attempt + 1, attempts)
                        status["message"] = f"{_short_reason(exc)}; retrying in {delay:.0f} s"
                        await asyncio.sleep(delay)
                assert last is not None
                raise _Exhausted(last, attempts)
            finally:
                try:
                    await client.aio.aclose()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

        t0 = time.monotonic()
        try:
            collected, used = _run_cancellable(with_retries, progress, status, self.timeout, label)
        except Cancelled:
            log.debug("gemini request cancelled")
            raise
        except _Exhausted as ex:
            raise self._error(ex.exc, key, ex.attempts) from None
        except ProcessingError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK/transport error becomes one line
            raise self._error(exc, key, 1) from None
        finally:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
            self._client = None
        seconds = time.monotonic() - t0
        return self._pick_image(collected, key, seconds, used)

    def _pick_image(self, c: "_Collected", key: str, seconds: float, attempts: int) -> _Answer:
        text = _one_line(redact(c.text, key), 2000)
        who = f"Gemini ({self.model})"
        said = f'; the model said: "{_one_line(redact(c.text or c.thought_text, key))}"' if (c.text or c.thought_text) else ""
        if c.block_reason:
            msg = f" ({_one_line(redact(c.block_message, key))})" if c.block_message else ""
            raise ProcessingError(f"{who} blocked the request: {c.block_reason}{msg}{said}")
        images = [p for p in c.image_parts if not p[2]] or c.image_parts
        if not images:
            fr = c.finish_reason or "STOP"
            if fr in BLOCK_FINISH and fr != "STOP":
                raise ProcessingError(f"{who} returned no image (finish reason {fr}){said}")
            raise ProcessingError(f"{who} answered with text only, no image{said or ' (and no text)'}")
        data, mime, _thought = images[-1]
        log.debug("gemini answer: %d bytes labelled %s (really %s), finish=%s, %.1f s", len(data), mime,
                  ip.sniff_format(data), c.finish_reason, seconds)
        # a server or proxy may echo the key anywhere: every string kept from the answer is redacted
        return _Answer(image=data, mime=_one_line(redact(mime, key)) if mime else mime, text=text,
                       finish_reason=_one_line(redact(c.finish_reason, key)) if c.finish_reason else c.finish_reason,
                       model_version=_one_line(redact(c.model_version, key)) if c.model_version else c.model_version,
                       cached=False, seconds=seconds, attempts=attempts)

    def _error(self, exc: BaseException, key: str, attempts: int) -> ProcessingError:
        who = f"Gemini ({self.model})"
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts > 1 else ""
        detail = _one_line(redact(_describe_exc(exc), key))
        code = getattr(exc, "code", None)
        if _is_timeout(exc):
            return ProcessingError(f"{who} did not answer within {self.timeout:g} s{tries}; "
                                   f"raise the timeout or ask for a smaller image size")
        if isinstance(code, int):
            low = detail.lower()
            if code in (400, 401, 403) and ("api key" in low or "api_key" in low or code in (401, 403)):
                return ProcessingError(f"{who} refused the API key ({detail}); check the key in Settings or GEMINI_API_KEY")
            if code == 404:
                return ProcessingError(f"{who}: model '{self.model}' not found ({detail}); pick another model")
            if code == 429:
                return ProcessingError(f"{who}: quota or rate limit exceeded{tries} ({detail}); wait and try again, "
                                       f"or check your plan's limits")
            if code >= 500:
                return ProcessingError(f"{who} is unavailable{tries} ({detail}); try again later or a smaller image size")
            return ProcessingError(f"{who} rejected the request ({detail})")
        if _is_connect_error(exc):
            return ProcessingError(f"cannot reach {who}{tries} ({detail}); check the network connection")
        return ProcessingError(f"{who} request failed{tries} ({detail})")

    def _report(self, kind: str, answers: list, t0: float, layout: str) -> dict[str, Any]:
        requested = sum(0 if a.cached else 1 for _, a, _ in answers)
        prompt = self.prompt if kind == "mask" else self.clean_prompt
        first_tile, first_ans, first_shape = answers[0]
        texts = [a.text for _, a, _ in answers if a.text]
        return {
            "provider": self.name,
            "kind": kind,
            "model": self.model,
            "image_size": self.effective_size,
            "aspect_ratio": first_tile.aspect,
            "tiles": len(answers),
            "tile_boxes": [list(t.box) for t, _, _ in answers],
            "layout": layout,
            "prompt_name": self.prompt_name if kind == "mask" else self.clean_prompt_name,
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16],
            "seconds": round(time.monotonic() - t0, 2),
            "requests_sent": requested,
            "estimated_cost_usd": estimate_cost(self.model, self.effective_size, requested),
            "cache_hit": requested == 0,
            "cache_hits": len(answers) - requested,
            "text": " | ".join(texts),
            "returned_size": [int(first_shape[1]), int(first_shape[0])],
            "returned_format": ip.sniff_format(first_ans.image),
            "returned_mime": first_ans.mime,
            "finish_reason": first_ans.finish_reason,
            "model_version": first_ans.model_version,
            "attempts": max([a.attempts for _, a, _ in answers] + [0]),
        }


# -- answer collection and error classification -------------------------------------------------

@dataclass
class _Collected:
    image_parts: list = field(default_factory=list)   # (bytes, mime, thought)
    text: str = ""
    thought_text: str = ""
    finish_reason: Optional[str] = None
    block_reason: Optional[str] = None
    block_message: Optional[str] = None
    model_version: Optional[str] = None


def _enum_name(v: Any) -> Optional[str]:
    if v is None:
        return None
    return str(getattr(v, "value", None) or getattr(v, "name", None) or v)


def _collect(responses: list) -> _Collected:
    """Merge one response (or the chunks of a stream) into parts, text and finish/block reasons."""
    c = _Collected()
    texts: list[str] = []
    thoughts: list[str] = []
    for r in responses:
        fb = getattr(r, "prompt_feedback", None)
        if fb is not None and getattr(fb, "block_reason", None):
            c.block_reason = _enum_name(fb.block_reason)
            c.block_message = getattr(fb, "block_reason_message", None)
        c.model_version = getattr(r, "model_version", None) or c.model_version
        cands = getattr(r, "candidates", None) or []
        if not cands:
            continue
        cand = cands[0]
        if getattr(cand, "finish_reason", None):
            c.finish_reason = _enum_name(cand.finish_reason)
        content = getattr(cand, "content", None)
        for part in (getattr(content, "parts", None) or []):
            inline = getattr(part, "inline_data", None)
            if inline is not None and inline.data:
                c.image_parts.append((bytes(inline.data), inline.mime_type or "", bool(part.thought)))
            elif getattr(part, "text", None):
                (thoughts if part.thought else texts).append(part.text)
    c.text = "".join(texts).strip()
    c.thought_text = "".join(thoughts).strip()
    return c


class _Exhausted(Exception):
    def __init__(self, exc: BaseException, attempts: int):
        super().__init__(str(exc))
        self.exc, self.attempts = exc, attempts


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return True
    return any(c.__name__ in ("TimeoutException", "ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout")
               for c in type(exc).__mro__)


def _is_connect_error(exc: BaseException) -> bool:
    return any(c.__name__ in ("ConnectError", "NetworkError", "RemoteProtocolError") for c in type(exc).__mro__) \
        or isinstance(exc, ConnectionError)


def _retriable(exc: BaseException) -> bool:
    code = getattr(exc, "code", None)
    from google.genai import errors as gerrors

    if isinstance(exc, gerrors.APIError):
        return code in RETRY_CODES
    return _is_timeout(exc) or _is_connect_error(exc)


def _retry_delay_hint(exc: BaseException) -> Optional[float]:
    """Seconds from a 429's ``RetryInfo.retryDelay`` ("37s"), if the server gave one."""
    details = getattr(exc, "details", None)
    try:
        items = details.get("error", details).get("details", []) if isinstance(details, dict) else []
        for d in items:
            delay = d.get("retryDelay") if isinstance(d, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                return float(delay[:-1])
    except (AttributeError, ValueError, TypeError):
        return None
    return None


def _describe_exc(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        status = getattr(exc, "status", None) or ""
        message = getattr(exc, "message", None) or ""
        return " ".join(str(x) for x in (code, status) if x) + (f": {message}" if message else "")
    if _is_timeout(exc):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _short_reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return f"{code} {getattr(exc, 'status', '') or ''}".strip()
    return "timed out" if _is_timeout(exc) else "connection failed"


def _run_cancellable(coro_fn: Callable[[], Any], progress: Optional[ProgressFn], status: dict,
                     expected: float, label: str = ""):
    """Run ``coro_fn()`` on a private event loop in a helper thread; poll ``progress`` every 0.1 s
    from the calling thread. When ``progress`` raises (``Cancelled``), cancel the task, wait
    briefly for it to unwind and re-raise."""
    loop = asyncio.new_event_loop()
    box: dict[str, Any] = {}
    done = threading.Event()

    def runner() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["task"] = loop.create_task(coro_fn())
            box["value"] = loop.run_until_complete(box["task"])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:  # noqa: BLE001
                pass
            loop.close()
            done.set()

    thread = threading.Thread(target=runner, name="aiflat-gemini", daemon=True)
    t0 = time.monotonic()
    thread.start()
    prefix = f"{label}: " if label else ""
    try:
        while not done.wait(0.1):
            elapsed = time.monotonic() - t0
            # An asymptotic guess: the real duration is unknown (15 s to minutes).
            frac = 0.95 * (1.0 - np.exp(-elapsed / max(5.0, expected / 4.0)))
            report(progress, float(frac), f"{prefix}{status['message']} ({elapsed:.0f} s)")
    except BaseException:
        def cancel() -> None:
            task = box.get("task")
            if task is not None:
                task.cancel()
        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:  # loop already closed: the request just finished
            pass
        done.wait(2.0)
        raise
    if "error" in box:
        err = box["error"]
        if isinstance(err, asyncio.CancelledError):
            raise Cancelled()
        raise err
    return box["value"]
