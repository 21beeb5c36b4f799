"""A fake Gemini server on 127.0.0.1 speaking the REST protocol the google-genai SDK uses.

The real ``google.genai.Client`` is pointed at it with ``GOOGLE_GEMINI_BASE_URL`` (or
``HttpOptions(base_url=...)``) and a dummy key. It understands

* ``POST /{v1|v1beta}/models/{model}:generateContent`` (one JSON answer), and
* ``POST /{v1|v1beta}/models/{model}:streamGenerateContent?alt=sse`` (server-sent events, one
  ``data: {...}`` chunk per part),

records every request (path, headers, JSON body, decoded inline images) and answers from a script:
``server.queue(reply, ...)`` answers the next requests in order; when the queue is empty the
``server.default`` reply is used, which by default behaves like a tiny "model": it finds dark specks
in the first image and returns a white-on-black mask at the size Gemini would return for the
requested ``imageConfig`` (so the client must resample), or, when two images are sent (a "clean"
request), returns the first image with the masked specks filled in.

A reply is a :class:`Reply` or a callable ``(request) -> Reply``. Builders: :func:`image_reply`,
:func:`text_reply`, :func:`blocked_reply`, :func:`error_reply`, :func:`model_reply`.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union

import cv2
import numpy as np

# Nominal output sizes (width, height) of the Gemini image models for each aspect ratio at 1K;
# 2K and 4K are twice and four times that.
NOMINAL_1K = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}
SIZE_FACTOR = {"1K": 1, "2K": 2, "4K": 4}


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    model: str
    stream: bool
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def parts(self) -> list[dict]:
        return [p for c in self.body.get("contents", []) for p in c.get("parts", [])]

    @property
    def images(self) -> list[np.ndarray]:
        """The inline images, decoded (cv2 channel order, unchanged depth)."""
        out = []
        for p in self.parts:
            inline = p.get("inlineData") or p.get("inline_data")
            if inline:
                raw = _b64decode(inline["data"])
                out.append(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED))
        return out

    @property
    def image_mime_types(self) -> list[str]:
        """MIME labels of the inline images (the SDK writes ``mime_type`` or ``mimeType``)."""
        out = []
        for p in self.parts:
            inline = p.get("inlineData") or p.get("inline_data")
            if inline:
                out.append(inline.get("mimeType") or inline.get("mime_type"))
        return out

    @property
    def text(self) -> str:
        return "\n".join(p["text"] for p in self.parts if "text" in p)

    @property
    def image_config(self) -> dict:
        return (self.body.get("generationConfig") or {}).get("imageConfig") or {}


@dataclass
class Reply:
    """What the server answers: HTTP ``status`` with JSON ``body`` after ``delay`` seconds."""

    body: Any = None
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


ReplyLike = Union[Reply, Callable[[Request], Reply]]


def _b64decode(data: str) -> bytes:
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4))


def encode(img: np.ndarray, ext: str = ".png", quality: int = 90) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    return buf.tobytes()


def image_part(data: bytes, mime: str = "image/png", thought: bool = False) -> dict:
    part: dict[str, Any] = {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}
    if thought:
        part["thought"] = True
    return part


def answer(parts: list[dict], finish: str = "STOP", **extra) -> dict:
    body = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 1290, "totalTokenCount": 1590},
        "modelVersion": "fake-gemini",
    }
    body.update(extra)
    return body


def image_reply(data: bytes, mime: str = "image/png", text: Optional[str] = None, thought_image: Optional[bytes] = None,
                thought_last: bool = False, delay: float = 0.0) -> Reply:
    """An answer carrying ``data`` (labelled ``mime``), optional text and an optional thought image."""
    parts: list[dict] = []
    if text:
        parts.append({"text": text})
    main = image_part(data, mime)
    if thought_image is not None:
        th = image_part(thought_image, "image/png", thought=True)
        parts += [main, th] if thought_last else [th, main]
    else:
        parts.append(main)
    return Reply(answer(parts), delay=delay)


def text_reply(text: str, finish: str = "STOP") -> Reply:
    return Reply(answer([{"text": text}], finish=finish))


def blocked_reply(reason: str = "SAFETY", finish: Optional[str] = None, text: Optional[str] = None) -> Reply:
    """A safety block: ``promptFeedback.blockReason`` (no candidates) or, with ``finish``, a candidate
    that ended with that finish reason (and optional text)."""
    if finish:
        parts = [{"text": text}] if text else []
        cand: dict[str, Any] = {"finishReason": finish, "index": 0}
        if parts:
            cand["content"] = {"role": "model", "parts": parts}
        return Reply({"candidates": [cand], "modelVersion": "fake-gemini"})
    return Reply({"promptFeedback": {"blockReason": reason}, "modelVersion": "fake-gemini"})


def error_reply(code: int, status: str, message: str, delay: float = 0.0, details: Optional[list] = None) -> Reply:
    """A Google API error (``details``: e.g. a ``RetryInfo`` with ``retryDelay``)."""
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return Reply({"error": err}, status=code, delay=delay)


def output_size(request: Request) -> tuple[int, int]:
    """(width, height) Gemini would return for the request's imageConfig."""
    cfg = request.image_config
    w, h = NOMINAL_1K.get(cfg.get("aspectRatio", "1:1"), (1024, 1024))
    k = SIZE_FACTOR.get(cfg.get("imageSize", "1K"), 1)
    return w * k, h * k


def find_specks(img: np.ndarray) -> np.ndarray:
    """The fake model's 'vision': uint8 mask (255 = dark speck) of a uint8 image."""
    gray = img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    gray = gray.astype(np.float32)
    background = cv2.medianBlur(gray.astype(np.uint8), 21).astype(np.float32)
    specks = (background - gray > np.maximum(12.0, 0.1 * background)) & (background > 20)
    return specks.astype(np.uint8) * 255


def model_reply(size: Optional[tuple[int, int]] = None, ext: str = ".png", mime: str = "image/png",
                text: str = "Here is the dust mask.", invert: bool = False, delay: float = 0.0,
                color: bool = True) -> Callable[[Request], Reply]:
    """A reply computed from the request like a model would: a mask (one image sent) or an inpainted
    image (two images sent), at ``size`` (default: Gemini's size for the imageConfig), encoded as
    ``ext`` but labelled ``mime``."""

    def _reply(request: Request) -> Reply:
        images = request.images
        w, h = size or output_size(request)
        if len(images) >= 2:
            img = images[0]
            mask = images[1]
            if mask.ndim == 3:
                mask = mask[..., 0]
            img8 = img if img.dtype == np.uint8 else (img // 257).astype(np.uint8)
            out = cv2.inpaint(img8, (mask > 127).astype(np.uint8), 5, cv2.INPAINT_TELEA)
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
        else:
            mask = find_specks(images[0])
            if invert:
                mask = 255 - mask
            out = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        if color and out.ndim == 2:
            out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)  # models answer in RGB
        return image_reply(encode(out, ext), mime=mime, text=text, delay=delay)

    return _reply


class FakeGemini:
    """The server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[ReplyLike] = []
        self.default: ReplyLike = model_reply()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- control -------------------------------------------------------------------------------
    def queue(self, *replies: ReplyLike) -> "FakeGemini":
        with self._lock:
            self.script.extend(replies)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeGemini":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-gemini", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------------
    def _next_reply(self) -> ReplyLike:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            body = {}
        path = h.path
        route = path.split("?")[0]
        model, _, method = route.rpartition("/models/")[2].partition(":")
        req = Request(method=method, path=path, model=model, stream=method == "streamGenerateContent",
                      headers={k.lower(): v for k, v in h.headers.items()}, body=body)
        with self._lock:
            self.requests.append(req)
        if "/models/" not in route or method not in ("generateContent", "streamGenerateContent"):
            return self._send_json(h, 404, {"error": {"code": 404, "message": f"no route {route}", "status": "NOT_FOUND"}})
        if not h.headers.get("x-goog-api-key"):
            return self._send_json(h, 403, {"error": {"code": 403, "message": "API key missing", "status": "PERMISSION_DENIED"}})
        reply = self._next_reply()
        if callable(reply):
            try:
                reply = reply(req)
            except Exception as exc:  # like Gemini's answer to an image it cannot process
                reply = error_reply(400, "INVALID_ARGUMENT", f"fake Gemini cannot process the request: {exc!r}")
        if reply.delay and self._stopping.wait(reply.delay):
            return
        try:
            if reply.status != 200 or not req.stream:
                self._send_json(h, reply.status, reply.body, reply.headers)
            else:
                self._send_sse(h, reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (cancel, timeout)
            pass

    @staticmethod
    def _send_json(h: BaseHTTPRequestHandler, status: int, body: Any, headers: Optional[dict] = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _send_sse(h: BaseHTTPRequestHandler, body: dict) -> None:
        """Stream the answer one part per event, as Gemini does (finishReason on the last one)."""
        chunks = []
        cands = body.get("candidates") or []
        if not cands or not (cands[0].get("content") or {}).get("parts"):
            chunks.append(body)
        else:
            cand = cands[0]
            parts = cand["content"]["parts"]
            for i, part in enumerate(parts):
                c: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": 0}
                if i == len(parts) - 1 and cand.get("finishReason"):
                    c["finishReason"] = cand["finishReason"]
                chunk: dict[str, Any] = {"candidates": [c], "modelVersion": body.get("modelVersion")}
                if i == len(parts) - 1 and "usageMetadata" in body:
                    chunk["usageMetadata"] = body["usageMetadata"]
                chunks.append(chunk)
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
