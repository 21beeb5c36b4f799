"""The Gemini provider, run with the real google-genai client against a fake Gemini server on
127.0.0.1 (tests/fake_gemini.py). No test touches the real network."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from aiflat_gui.ai import get_provider
from aiflat_gui.ai import imageprep as ip
from aiflat_gui.ai.gemini import MODELS, GeminiProvider, estimate_cost
from aiflat_gui.errors import Cancelled, InputError, ProcessingError
from aiflat_gui.resources import resource_path

sys.path.insert(0, str(Path(__file__).parent))
from fake_gemini import (FakeGemini, blocked_reply, encode, error_reply, image_reply,  # noqa: E402
                         model_reply, text_reply)

KEY = "AIzaFAKE-secret-key-0123456789"
H, W = 240, 400
# Dust specks (y, x, radius) on the test image; one sits across the middle for the tile tests.
SPECKS = [(60, 80, 5), (170, 300, 6), (120, 200, 5), (200, 60, 4)]


def dusty_image(h: int = H, w: int = W, specks=SPECKS, seed: int = 0) -> np.ndarray:
    """A 16-bit-like solar disc (float32) with dark dust specks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    disc = np.exp(-(((yy - h / 2) / (0.9 * h)) ** 2 + ((xx - w / 2) / (0.9 * w)) ** 2))
    img = 2000 + 30000 * disc + rng.normal(0, 40, (h, w))
    for (y, x, r) in specks:
        d = np.hypot(yy - y, xx - x)
        img *= np.where(d <= r, 0.65, 1.0)
    return img.astype(np.float32)


def speck_truth(h: int = H, w: int = W, specks=SPECKS) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    t = np.zeros((h, w), bool)
    for (y, x, r) in specks:
        t |= np.hypot(yy - y, xx - x) <= r
    return t


def assert_mask_finds_specks(mask: np.ndarray, specks=SPECKS) -> None:
    truth = speck_truth(mask.shape[0], mask.shape[1], specks)
    for (y, x, r) in specks:
        assert mask[y - 1:y + 2, x - 1:x + 2].all(), f"speck at {(y, x)} missed"
    grown = cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert not (mask & ~grown).any(), "mask marks pixels far from any speck"


@pytest.fixture
def server():
    with FakeGemini() as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch):
    """Never read the developer's real keyring."""
    import aiflat_gui.ai.keys as keys

    monkeypatch.setattr(keys, "_keyring", lambda: None)


@pytest.fixture
def make(server, tmp_path):
    def _make(**kw) -> GeminiProvider:
        opts = dict(api_key=KEY, base_url=server.url, cache_dir=str(tmp_path / "cache"), timeout=5.0,
                    backoff=0.01, retries=2)
        opts.update(kw)
        return GeminiProvider(**opts)

    return _make


# -- the request ------------------------------------------------------------------------------

def test_request_is_what_gemini_expects(make, server):
    ref = dusty_image()
    result = make().find_mask(ref)
    assert len(server.requests) == 1
    rq = server.requests[0]
    assert rq.path == "/v1/models/gemini-3-pro-image:generateContent"
    assert rq.headers["x-goog-api-key"] == KEY
    assert rq.body["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]
    assert rq.image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    assert rq.image_mime_types == ["image/png"]
    assert rq.text == resource_path("prompts", "mask.txt").read_text(encoding="utf-8")
    (sent,) = rq.images
    # 400x240 (5:3) is padded, never stretched, to 16:9: 427x240 with the frame centred.
    assert sent.dtype == np.uint8 and sent.ndim == 2
    assert sent.shape == (240, 427)
    assert abs(sent.shape[1] / sent.shape[0] - 16 / 9) < 0.01
    left = (427 - 400) // 2
    assert (sent[:, :left] == 0).all() and (sent[:, left + 400:] == 0).all()
    inner = sent[:, left:left + 400].astype(np.float32)
    # the content is the stretched frame: the specks are there and darker than their surroundings
    for (y, x, r) in SPECKS:
        assert inner[y, x] < 0.8 * inner[y, x + 3 * r]
    assert np.corrcoef(inner.ravel(), ref.ravel())[0, 1] > 0.99
    assert result.mask.shape == ref.shape and result.mask.dtype == bool
    assert_mask_finds_specks(result.mask)
    assert result.soft.shape == ref.shape and result.soft.dtype == np.float32
    rep = result.report
    assert rep["provider"] == "gemini" and rep["model"] == "gemini-3-pro-image"
    assert rep["aspect_ratio"] == "16:9" and rep["image_size"] == "1K" and rep["tiles"] == 1
    assert rep["returned_size"] == [1376, 768]  # the model's size, not ours: we resampled
    assert rep["cache_hit"] is False and rep["estimated_cost_usd"] > 0.1
    assert rep["text"] == "Here is the dust mask."
    json.dumps(rep)  # serialisable


def test_env_base_url_and_key_are_used(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
    monkeypatch.setenv("GEMINI_API_KEY", "env-key-1")
    p = get_provider("gemini", model="gemini-3.1-flash-image", image_size="2K", cache_dir=str(tmp_path), timeout=5)
    p.find_mask(dusty_image())
    (rq,) = server.requests
    assert rq.model == "gemini-3.1-flash-image"
    assert rq.headers["x-goog-api-key"] == "env-key-1"
    assert rq.image_config == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_user_prompt_file_is_sent_as_is(make, server, tmp_path):
    f = tmp_path / "my prompt.txt"
    f.write_text("  Mark the dust, please.\n\n", encoding="utf-8")
    r = make(prompt_file=str(f)).find_mask(dusty_image())
    assert server.requests[0].text == "  Mark the dust, please.\n\n"
    assert r.report["prompt_name"] == "my prompt.txt"
    make(prompt="only this").find_mask(dusty_image())
    assert server.requests[1].text == "only this"
    with pytest.raises(InputError, match="prompt file not found"):
        make(prompt_file=str(tmp_path / "missing.txt"))


def test_flash_25_gets_no_image_size(make, server):
    make(model="gemini-2.5-flash-image", image_size="4K").find_mask(dusty_image())
    assert server.requests[0].image_config == {"aspectRatio": "16:9"}


# -- reading answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(640, 640), (2752, 1536), (300, 170)])
def test_answer_at_another_size_and_aspect(make, server, size):
    server.queue(model_reply(size=size))
    r = make().find_mask(dusty_image())
    assert r.mask.shape == (H, W)
    assert r.report["returned_size"] == list(size)
    assert_mask_finds_specks(r.mask)


def test_jpeg_bytes_labelled_png(make, server):
    server.queue(model_reply(ext=".jpg", mime="image/png"))
    r = make().find_mask(dusty_image())
    assert r.report["returned_mime"] == "image/png" and r.report["returned_format"] == "jpeg"
    assert_mask_finds_specks(r.mask)


def test_webp_answer(make, server):
    server.queue(model_reply(ext=".webp", mime="image/png"))
    r = make().find_mask(dusty_image())
    assert r.report["returned_format"] == "webp"
    assert_mask_finds_specks(r.mask)


def _good_mask_png() -> bytes:
    padded, _ = ip.pad_to_aspect(speck_truth().astype(np.uint8) * 255, "16:9")
    return encode(cv2.resize(padded, (1376, 768), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("thought_last", [False, True])
def test_image_in_a_thought_part_is_skipped(make, server, thought_last):
    junk = encode(np.full((768, 1376), 255, np.uint8))  # a draft: all white
    server.queue(image_reply(_good_mask_png(), thought_image=junk, thought_last=thought_last, text="done"))
    r = make().find_mask(dusty_image())
    assert_mask_finds_specks(r.mask)


def test_only_a_thought_image_is_used_when_nothing_else(make, server):
    server.queue(lambda req: image_reply(b"", thought_image=_good_mask_png()))
    r = make().find_mask(dusty_image())
    assert_mask_finds_specks(r.mask)


def test_black_on_white_mask_is_inverted(make, server):
    server.queue(model_reply(invert=True))
    r = make().find_mask(dusty_image())
    assert r.report["inverted_tiles"] == 1
    assert_mask_finds_specks(r.mask)


def test_streaming(make, server):
    r = make(stream=True).find_mask(dusty_image())
    (rq,) = server.requests
    assert rq.path == "/v1/models/gemini-3-pro-image:streamGenerateContent?alt=sse"
    assert r.report["text"] == "Here is the dust mask." and r.report["finish_reason"] == "STOP"
    assert_mask_finds_specks(r.mask)


def test_streaming_and_not_give_the_same_mask(make, server, tmp_path):
    a = make(cache_dir=str(tmp_path / "a")).find_mask(dusty_image())
    b = make(cache_dir=str(tmp_path / "b"), stream=True).find_mask(dusty_image())
    assert np.array_equal(a.mask, b.mask)


def test_undecodable_image_is_a_clear_error(make, server):
    server.queue(image_reply(b"not an image at all", mime="image/png"))
    with pytest.raises(ProcessingError, match="cannot be decoded"):
        make().find_mask(dusty_image())


# -- failures --------------------------------------------------------------------------------

def test_429_then_success(make, server):
    server.queue(error_reply(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."))
    r = make().find_mask(dusty_image())
    assert len(server.requests) == 2
    assert r.report["attempts"] == 2
    assert_mask_finds_specks(r.mask)


def test_429_retry_delay_from_the_server_is_honoured(make, server):
    server.queue(error_reply(429, "RESOURCE_EXHAUSTED", "quota", details=[
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.6s"}]))
    t0 = time.monotonic()
    make(backoff=0.01).find_mask(dusty_image())
    assert len(server.requests) == 2 and time.monotonic() - t0 >= 0.6


def test_503_exhausted_is_a_clear_error(make, server):
    server.default = error_reply(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    with pytest.raises(ProcessingError) as ei:
        make(retries=2).find_mask(dusty_image())
    msg = str(ei.value)
    assert len(server.requests) == 3
    assert "\n" not in msg
    assert "unavailable" in msg and "after 3 attempts" in msg and "overloaded" in msg
    assert ei.value.exit_code == 1


def test_400_bad_key_is_not_retried(make, server):
    server.default = error_reply(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
    with pytest.raises(ProcessingError, match="refused the API key"):
        make().find_mask(dusty_image())
    assert len(server.requests) == 1


def test_unknown_model(make, server):
    server.default = error_reply(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1")
    with pytest.raises(ProcessingError, match="model 'gemini-9' not found"):
        make(model="gemini-9").find_mask(dusty_image())
    assert server.requests[0].model == "gemini-9"


def test_timeout_is_a_clear_error(make, server):
    server.default = model_reply(delay=5.0)
    t0 = time.monotonic()
    with pytest.raises(ProcessingError) as ei:
        make(timeout=0.5, retries=1).find_mask(dusty_image())
    elapsed = time.monotonic() - t0
    assert "did not answer within 0.5 s after 2 attempts" in str(ei.value)
    assert len(server.requests) == 2
    assert elapsed < 5.0  # each attempt gave up at 0.5 s: waiting for one 5 s reply would exceed this


def test_slow_then_fast_is_retried(make, server):
    server.queue(model_reply(delay=3.0))
    r = make(timeout=0.5).find_mask(dusty_image())
    assert len(server.requests) == 2 and r.report["attempts"] == 2
    assert_mask_finds_specks(r.mask)


@pytest.mark.parametrize("reply,expect", [
    (blocked_reply("SAFETY"), "blocked the request: SAFETY"),
    (blocked_reply("PROHIBITED_CONTENT"), "blocked the request: PROHIBITED_CONTENT"),
    (blocked_reply(finish="IMAGE_SAFETY", text="I can't edit this image."),
     "no image (finish reason IMAGE_SAFETY); the model said: \"I can't edit this image.\""),
    (blocked_reply(finish="NO_IMAGE"), "no image (finish reason NO_IMAGE)"),
])
def test_safety_block(make, server, reply, expect):
    server.queue(reply)
    with pytest.raises(ProcessingError) as ei:
        make().find_mask(dusty_image())
    assert expect in str(ei.value)
    assert len(server.requests) == 1  # not retried, not cached
    assert list((Path(make().cache.root)).glob("*.json")) == []


def test_block_message_never_carries_the_key(make, server):
    from fake_gemini import Reply

    server.queue(Reply({"promptFeedback": {"blockReason": "OTHER", "blockReasonMessage": f"bad request for key {KEY}"},
                        "modelVersion": "fake-gemini"}))
    with pytest.raises(ProcessingError) as ei:
        make().find_mask(dusty_image())
    msg = str(ei.value)
    assert "blocked the request: OTHER" in msg and "bad request for key ***" in msg
    assert KEY not in msg


def test_text_only_reply_quotes_the_model(make, server):
    server.queue(text_reply("I cannot see any dust in this\nimage of the Sun."))
    with pytest.raises(ProcessingError) as ei:
        make().find_mask(dusty_image())
    msg = str(ei.value)
    assert "text only" in msg and '"I cannot see any dust in this image of the Sun."' in msg
    assert "\n" not in msg


def test_cancel_mid_request(make, server):
    server.default = model_reply(delay=10.0)
    calls, cancelled_at = [], []

    def progress(fraction, message):
        calls.append((fraction, message))
        # cancel once the wait has been reported twice (not after a fixed time: on a loaded machine
        # the request alone took longer than that, and the cancel came before any repeat)
        if server.requests and sum("waiting for" in m for _, m in calls) >= 2:
            cancelled_at.append(time.monotonic())
            raise Cancelled()

    p = make()
    with pytest.raises(Cancelled):
        p.find_mask(dusty_image(), progress=progress)
    assert time.monotonic() - cancelled_at[0] < 5.0  # the server would have answered after 10 s
    assert len(calls) >= 3 and all(0.0 <= f <= 1.0 for f, _ in calls)
    assert any("waiting for gemini-3-pro-image" in m for _, m in calls)
    assert p.cache.entries() == []
    assert p._client is None


def test_cancel_during_backoff(make, server):
    server.default = error_reply(503, "UNAVAILABLE", "overloaded")
    cancelled_at = []

    def progress(fraction, message):
        if "retrying" in message:
            cancelled_at.append(time.monotonic())
            raise Cancelled()

    with pytest.raises(Cancelled):
        make(backoff=30.0, retries=3).find_mask(dusty_image(), progress=progress)
    assert time.monotonic() - cancelled_at[0] < 5.0  # not after the 30 s backoff
    assert len(server.requests) == 1


# -- cache ---------------------------------------------------------------------------------

def test_cache_hit_makes_no_request(make, server, tmp_path):
    ref = dusty_image()
    a = make().find_mask(ref)
    b = make().find_mask(ref)
    assert len(server.requests) == 1
    assert b.report["cache_hit"] is True and b.report["estimated_cost_usd"] == 0
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.soft, b.soft)
    files = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert files == [".bin", ".json"]
    meta = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert meta["model"] == "gemini-3-pro-image" and meta["text"] == "Here is the dust mask."
    # anything that changes the request is a miss
    make(image_size="2K").find_mask(ref)
    make(prompt="other").find_mask(ref)
    make().find_mask(dusty_image(seed=1))
    assert len(server.requests) == 4


def test_reroll_asks_again_and_overwrites(make, server, tmp_path):
    ref = dusty_image()
    make().find_mask(ref)
    server.queue(model_reply(text="second opinion"))
    r = make(reroll=True).find_mask(ref)
    assert len(server.requests) == 2 and r.report["cache_hit"] is False
    again = make().find_mask(ref)
    assert len(server.requests) == 2
    assert again.report["text"] == "second opinion"
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_damaged_cache_entry_is_a_miss(make, server, tmp_path):
    ref = dusty_image()
    make().find_mask(ref)
    next((tmp_path / "cache").glob("*.bin")).write_bytes(b"garbage")
    make().find_mask(ref)
    assert len(server.requests) == 2


# -- the key ---------------------------------------------------------------------------------

def test_key_never_leaks(make, server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    p = make()
    r = p.find_mask(dusty_image())
    server.queue(error_reply(400, "INVALID_ARGUMENT", f"API key not valid: {KEY}"))
    with pytest.raises(ProcessingError) as e1:
        make(reroll=True).find_mask(dusty_image())
    server.default = error_reply(503, "UNAVAILABLE", f"overloaded ({KEY})")
    with pytest.raises(ProcessingError) as e2:
        make(reroll=True, retries=1).find_mask(dusty_image())
    assert KEY not in json.dumps(r.report) and KEY not in json.dumps(p.last_report)
    assert KEY not in str(e1.value) and "***" in str(e1.value)
    assert KEY not in str(e2.value)
    assert KEY not in caplog.text and "retrying" in caplog.text
    for f in (tmp_path / "cache").iterdir():
        assert KEY.encode() not in f.read_bytes()
    assert KEY not in repr(p)


def test_no_key_fails_fast(server, tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    p = GeminiProvider(base_url=server.url, cache_dir=str(tmp_path))
    with pytest.raises(InputError) as ei:
        p.find_mask(dusty_image())
    assert "no Gemini API key" in str(ei.value) and "GEMINI_API_KEY" in str(ei.value)
    assert server.requests == []


# -- tiles, colour, clean images ------------------------------------------------------------------

def test_tiles_are_stitched(make, server):
    ref = dusty_image()
    p = make(tile=160, overlap=32)
    d = p.describe_request(ref)
    r = p.find_mask(ref)
    assert d["tiles"] == r.report["tiles"] == len(server.requests) > 1
    assert d["estimated_cost_usd"] == pytest.approx(estimate_cost("gemini-3-pro-image", "1K", d["tiles"]))
    for rq, box in zip(server.requests, r.report["tile_boxes"]):
        y0, y1, x0, x1 = box
        assert y1 - y0 <= 160 and x1 - x0 <= 160
        (img,) = rq.images
        ratio = rq.image_config["aspectRatio"]
        assert (img.shape[0], img.shape[1]) == ip.padded_shape(y1 - y0, x1 - x0, ratio)
    assert_mask_finds_specks(r.mask)


def test_large_frame_is_tiled_automatically(make):
    p = make()
    assert p.describe_request(np.zeros((1200, 1920), np.float32))["tiles"] == 1
    d = p.describe_request(np.zeros((2160, 3840), np.float32))  # 16:9 at 1K: 1376x768 -> 2 tiles
    assert d["tiles"] == 2 and d["estimated_cost_usd"] == pytest.approx(2 * estimate_cost(MODELS[0], "1K"))
    assert p.describe_request(np.zeros((4000, 6000), np.float32))["tiles"] == 6  # 3x2 at 3:2
    assert make(image_size="2K").describe_request(np.zeros((2160, 3840), np.float32))["tiles"] == 1
    assert make(tile=0).describe_request(np.zeros((2160, 3840), np.float32))["tiles"] == 1


def test_rgb_reference(make, server):
    ref = np.stack([dusty_image(), 0.5 * dusty_image(), 0.2 * dusty_image()], axis=2)
    r = make().find_mask(ref)
    (img,) = server.requests[0].images
    assert img.ndim == 3 and img.shape[2] == 3
    assert img[..., 2].mean() > img[..., 0].mean()  # cv2 decodes BGR: red is the brightest
    assert_mask_finds_specks(r.mask)


def test_bayer_reference_is_demosaiced(make, server):
    from aiflat_gui.io.base import ArraySequence

    mono = dusty_image()
    rgb = np.stack([mono, 0.6 * mono, 0.3 * mono], axis=2)
    cfa = ip.remosaic(rgb, "RGGB")
    seq = ArraySequence(cfa[None].astype(np.uint16), color="RGGB")
    r = make().find_mask(cfa, seq)
    (img,) = server.requests[0].images
    assert img.ndim == 3 and r.report["layout"] == "RGGB"
    assert_mask_finds_specks(r.mask)


def test_request_clean(make, server):
    ref = dusty_image()
    p = make()
    mask = p.find_mask(ref).mask
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    clean = p.request_clean(ref, grown)
    rq = server.requests[-1]
    assert len(rq.images) == 2
    sent_img, sent_mask = rq.images
    assert sent_img.shape == sent_mask.shape == (240, 427)
    assert set(np.unique(sent_mask)) == {0, 255}
    assert rq.text == resource_path("prompts", "clean.txt").read_text(encoding="utf-8")
    assert clean.shape == ref.shape and clean.dtype == np.float32
    out = ~cv2.dilate(grown.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    rel = np.abs(clean[out] - ref[out]) / ref[out]
    assert np.median(rel) < 0.02  # the 8-bit round trip, inverted to the reference's scale
    for (y, x, r_) in SPECKS:
        assert clean[y, x] > 1.3 * ref[y, x]  # the dust is filled in
    # cached like masks
    n = len(server.requests)
    p.request_clean(ref, grown)
    assert len(server.requests) == n
    assert p.last_report["kind"] == "clean" and p.last_report["cache_hit"] is True


def test_request_clean_bayer_returns_cfa(make, server):
    from aiflat_gui.io.base import ArraySequence

    mono = dusty_image()
    cfa = ip.remosaic(np.stack([mono, 0.6 * mono, 0.3 * mono], axis=2), "GRBG")
    seq = ArraySequence(cfa[None].astype(np.uint16), color="GRBG")
    clean = make().request_clean(cfa, speck_truth(), sequence=seq)
    assert clean.shape == cfa.shape
    far = ~cv2.dilate(speck_truth().astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    far[:4], far[-4:], far[:, :4], far[:, -4:] = False, False, False, False
    assert np.median(np.abs(clean[far] - cfa[far]) / cfa[far]) < 0.05


def test_with_clean_returns_the_clean_image_too(make, server):
    ref = dusty_image()
    p = make(with_clean=True)
    d = p.describe_request(ref)
    assert d["requests"] == 2 and d["cached"] is False
    r = p.find_mask(ref)
    assert len(server.requests) == 2
    assert len(server.requests[0].images) == 1 and len(server.requests[1].images) == 2
    sent_mask = server.requests[1].images[1][:, 13:413] > 127
    assert sent_mask.sum() > r.mask.sum()  # grown by clean_grow before sending
    assert r.clean is not None and r.clean.shape == ref.shape and r.clean.dtype == np.float32
    for (y, x, _r) in SPECKS:
        assert r.clean[y, x] > 1.3 * ref[y, x]
    assert r.report["clean"]["requests_sent"] == 1
    assert r.report["estimated_cost_usd"] == pytest.approx(estimate_cost(MODELS[0], "1K", 2))
    assert p.describe_request(ref)["cached"] is True


def test_describe_and_costs(make):
    d = make().describe_request(dusty_image())
    assert d["model"] == "gemini-3-pro-image" and d["output_size"] == [1376, 768]
    assert d["tiles"] == 1 and "$0.14" in d["summary"]
    assert estimate_cost("gemini-3-pro-image", "4K") > estimate_cost("gemini-3-pro-image", "2K")
    assert estimate_cost("gemini-3.1-flash-image", "1K") < estimate_cost("gemini-3-pro-image", "1K")
    assert estimate_cost("gemini-2.5-flash-image", "4K") < 0.05
    assert estimate_cost("some-future-model", "1K") == estimate_cost("gemini-3-pro-image", "1K")
    assert estimate_cost("gemini-3-pro-image", "1K", 3) == pytest.approx(3 * estimate_cost("gemini-3-pro-image", "1K"))


def test_bad_options():
    with pytest.raises(InputError, match="image size"):
        GeminiProvider(image_size="8K")
    with pytest.raises(InputError, match="timeout"):
        GeminiProvider(timeout=0)


# -- image preparation -----------------------------------------------------------------------

@pytest.mark.parametrize("w,h,expect", [(1920, 1200, "3:2"), (1920, 1080, "16:9"), (1000, 1000, "1:1"), (640, 480, "4:3"),
                                        (1200, 1920, "2:3"), (1080, 1920, "9:16"), (2520, 1080, "21:9"), (1000, 1260, "4:5")])
def test_nearest_aspect_and_padding(w, h, expect):
    assert ip.nearest_aspect(w, h) == expect
    img = np.ones((h, w), np.uint8)
    padded, (top, left) = ip.pad_to_aspect(img, expect)
    ph, pw = padded.shape
    a, b = map(int, expect.split(":"))
    assert abs(pw / ph - a / b) < 0.01 and ph >= h and pw >= w and (ph == h or pw == w)
    assert padded.sum() == img.sum() and padded[top:top + h, left:left + w].all()


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_demosaic_codes_match_the_pattern(pattern):
    rgb = np.zeros((16, 16, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30000, 10000, 3000
    cfa = ip.remosaic(rgb, pattern)
    u8, stretch, layout = ip.to_model_image(cfa, pattern)
    assert layout == pattern
    centre = u8[6:10, 6:10].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[1] > centre[2]  # red brightest, blue darkest
    back = ip.from_model_image(u8 / 255.0, pattern, stretch)
    assert np.allclose(back[4:12, 4:12], cfa[4:12, 4:12], rtol=0.02)


def test_plan_tiles_cover_with_overlap():
    boxes = ip.plan_tiles(1000, 2500, 900, 64)
    cover = np.zeros((1000, 2500), int)
    for y0, y1, x0, x1 in boxes:
        assert y1 - y0 <= 900 + 64 and x1 - x0 <= 900 + 64
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert ip.plan_tiles(500, 600, 900, 64) == [(0, 500, 0, 600)]


def test_decode_answer_by_content():
    img = (np.arange(64 * 80) % 256).astype(np.uint8).reshape(64, 80)
    for ext in (".png", ".jpg", ".webp", ".bmp"):
        out = ip.decode_answer(encode(img, ext))
        assert out.shape[:2] == (64, 80) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    out16 = ip.decode_answer(encode((img.astype(np.uint16) * 257), ".png"))
    assert np.allclose(out16 * 255, img, atol=0.01)
    rgba = np.dstack([img, img, img, np.full_like(img, 255)])
    assert ip.decode_answer(encode(rgba, ".png")).shape == (64, 80, 3)
    assert ip.decode_answer(b"junk") is None and ip.decode_answer(b"") is None


def test_stretch_is_robust_to_hot_pixels_and_nan():
    img = dusty_image()
    img[5, 5] = 1e9
    img[6, 6] = np.nan
    u8, stretch, _ = ip.to_model_image(img)
    assert stretch.hi < 40000 and u8[5, 5] == 255 and u8[6, 6] == 0
    assert u8.max() == 255 and np.percentile(u8, 50) > 60


# -- the command line ------------------------------------------------------------------------

def _cli(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "aiflat_gui.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_cli_mask_with_fake_gemini(server, tmp_path):
    from aiflat_gui.io.ser import write_ser

    frames = np.stack([dusty_image(seed=s) for s in range(3)]).clip(0, 65535).astype(np.uint16)
    ser = write_ser(tmp_path / "demo.ser", frames, color="mono")
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    env.update(GOOGLE_GEMINI_BASE_URL=server.url, GEMINI_API_KEY="dummy", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    out = _cli(["mask", str(ser), "--provider", "gemini", "-o", str(tmp_path / "m.png"),
                "--cache-dir", str(tmp_path / "cache"), "--timeout", "10"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    m = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert m.shape == (H, W)
    assert_mask_finds_specks(m > 0)
    assert len(server.requests) == 1 and server.requests[0].headers["x-goog-api-key"] == "dummy"
    assert "dummy" not in out.stdout + out.stderr


def test_cli_mask_without_key_fails_fast(server, tmp_path):
    from aiflat_gui.io.ser import write_ser

    ser = write_ser(tmp_path / "demo.ser", dusty_image()[None].astype(np.uint16), color="mono")
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    env.update(GOOGLE_GEMINI_BASE_URL=server.url, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    out = _cli(["mask", str(ser), "--provider", "gemini", "-o", str(tmp_path / "m.png"),
                "--cache-dir", str(tmp_path / "cache")], env, tmp_path)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("aiflat: error:") and "GEMINI_API_KEY" in lines[-1]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "m.png").exists()
    assert server.requests == []
