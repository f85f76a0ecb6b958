"""The browser page in a real browser: Debian's chromium (headless, fake camera and
microphone) driven by Playwright, against real `sam2long-stream run whip://...` node
processes (real model code, random weights, image size 128).

Random weights give meaningless masks: the tests assert that masks *arrive and are
drawn*, never what they look like. `make test` installs chromium (Debian, as root) and
Playwright (dev extras); without them these tests skip, saying which is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sam2long_stream.control import ControlClient
from sam2long_stream.testing import listens
from sam2long_stream.transport import Subscriber
from tests.conftest import REPO_ROOT, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",  # root in a container
    "--autoplay-policy=no-user-gesture-required",
]


def _browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is missing (pip install -e '.[dev]'; make test does)"
    if not os.access(CHROMIUM, os.X_OK):
        return "Debian's chromium is missing (apt-get install chromium; make test does as root)"
    return None


_PROBLEM = _browser_problem()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or ""),
]

GENEROUS = 90.0  # seconds: a busy 2-core machine runs the model at a few fps


def wait_for(what: str, check: Callable[[], Any], timeout: float = GENEROUS) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


# --------------------------------------------------------------------------- a node


class NodeProcess:
    """`sam2long-stream run whip://...` as a user starts it."""

    def __init__(self, *extra: str, scheme: str = "http", token: str | None = None) -> None:
        self.whip_port = free_port()
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.control = f"tcp://127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.base = f"{scheme}://127.0.0.1:{self.whip_port}"
        self.whip_url = f"{self.base}/whip/cam0"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sam2long_stream.cli",
                "run",
                f"whip://127.0.0.1:{self.whip_port}/whip/cam0"
                + (f"?token={token}" if token else ""),
                "--pub",
                self.pub,
                "--control",
                self.control,
                "--http",
                self.http,
                "--image-size",
                "128",
                "--seed",
                "0",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
        self.ctl = ControlClient(self.control, timeout_s=10.0)
        wait_for("the node answers status", self._answers, timeout=180)
        # The control socket answers as soon as the node runs; the WHIP source binds its
        # port on its own thread a moment later (source_state "starting" until then).
        wait_for("the WHIP port listens", self._listens, timeout=180)

    def _listens(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"node exited {self.proc.returncode}: {self.output()[-2000:]}")
        return listens(self.whip_port, timeout=5)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"node exited {self.proc.returncode}: {self.output()[-2000:]}")
        try:
            return bool(self.ctl.status())
        except TimeoutError:
            return False

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def status(self) -> dict[str, Any]:
        return self.ctl.status()

    def healthz(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://{self.http}/healthz", timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.ctl.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    n = NodeProcess()
    try:
        yield n
    finally:
        code = n.stop()
        assert code == 0, f"node exited {code}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, node: NodeProcess) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 900, "height": 640})
    pg = ctx.new_page()
    pg.goto(node.base + "/")
    wait_for("the page's WebSocket opens", lambda: pg.evaluate("sam2.wsOpen"), 30)
    try:
        yield pg
    finally:
        if pg.evaluate("sam2.location") is not None:
            pg.click("#hangup")
            wait_for("hang-up", lambda: pg.evaluate("sam2.location") is None, 30)
        ctx.close()
        try:
            wait_for("the node waits again", lambda: node.status()["source_state"] != "connected")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; node log: {node.output()[-3000:]}") from None


def sam2(pg: Any) -> dict[str, Any]:
    return pg.evaluate(
        "({state: sam2.state, masks: sam2.masks, drawn: sam2.drawn, errors: sam2.errors,"
        " last: sam2.lastMasks, replies: sam2.replies, offerKinds: sam2.offerKinds,"
        " fps: sam2.fps, latencyMs: sam2.latencyMs})"
    )


def publish(pg: Any, audio: bool) -> None:
    if audio:
        pg.check("#audio")
    else:
        pg.uncheck("#audio")
    before = sam2(pg)["masks"]
    pg.click("#publish")
    wait_for("the page connects", lambda: sam2(pg)["state"] == "connected", 60)
    wait_for("masks reach the page", lambda: sam2(pg)["masks"] >= before + 3)


def overlay_painted_pixels(pg: Any) -> int:
    return int(
        pg.evaluate(
            """() => {
              const c = document.getElementById("overlay");
              const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
              return n;
            }"""
        )
    )


def drag_box(pg: Any, fx0: float, fy0: float, fx1: float, fy1: float) -> None:
    bb = pg.locator("#ui").bounding_box()
    pg.mouse.move(bb["x"] + bb["width"] * fx0, bb["y"] + bb["height"] * fy0)
    pg.mouse.down()
    pg.mouse.move(bb["x"] + bb["width"] * fx1, bb["y"] + bb["height"] * fy1, steps=6)
    pg.mouse.up()


# --------------------------------------------------------------------------- the page


def test_audio_and_video_publisher_gets_masks_drawn(node: NodeProcess, page: Any) -> None:
    node.ctl.reset()
    oid = node.ctl.add_object(box=[200, 150, 440, 330])["object_id"]  # held: no frame yet
    publish(page, audio=True)
    s = sam2(page)
    assert s["offerKinds"] == ["audio", "video"]  # the browser lists audio first
    assert not s["errors"]
    wait_for(
        "the object's masks are drawn",
        lambda: (
            oid in [o["id"] for o in (sam2(page)["last"] or {}).get("objects", [])]
            and sam2(page)["drawn"] >= 2
        ),
    )
    assert overlay_painted_pixels(page) > 0  # legend, box and mask on the canvas
    assert page.locator("#objects").inner_text().startswith(f"#{oid} ")
    wait_for("fps and latency shown", lambda: sam2(page)["latencyMs"] is not None, 30)
    s = sam2(page)
    assert s["fps"] > 0 and 0 < s["latencyMs"] < 60_000
    st = node.status()
    assert st["source_state"] == "connected" and st["frames_processed"] > 0
    assert (st["width"], st["height"]) == (s["last"]["width"], s["last"]["height"])


def test_video_only_publisher_and_drawing_a_box(node: NodeProcess, page: Any) -> None:
    node.ctl.reset()
    publish(page, audio=False)
    assert sam2(page)["offerKinds"] == ["video"]
    drag_box(page, 0.3, 0.3, 0.6, 0.7)
    reply = wait_for("the box's reply", lambda: sam2(page)["replies"], 30)[-1]
    assert reply["ok"] and reply["op"] == "add_box", reply
    oid = reply["object_id"]
    assert node.status()["objects"] == [oid]
    n = sam2(page)["drawn"]
    wait_for(
        "masks of the new object are drawn",
        lambda: oid in [o["id"] for o in sam2(page)["last"]["objects"]] and sam2(page)["drawn"] > n,
    )
    assert overlay_painted_pixels(page) > 0
    # The control socket's validation: a box outside the frame is refused, nothing changes.
    page.evaluate("send({type: 'add_box', box: [5000, 10, 6000, 20]})")
    wait_for("the refusal", lambda: len(sam2(page)["replies"]) >= 2, 30)
    bad = sam2(page)["replies"][-1]
    assert bad["ok"] is False and "frame" in bad["error"], bad
    assert node.status()["objects"] == [oid]
    page.click("#clear")
    wait_for("objects cleared", lambda: node.status()["objects"] == [], 30)


def test_hang_up_and_publish_again(node: NodeProcess, page: Any) -> None:
    publish(page, audio=False)
    before = node.status()["reconnects"]
    page.click("#hangup")
    wait_for("the node sees the hang-up", lambda: node.status()["source_state"] == "disconnected")
    wait_for("the page hangs up", lambda: sam2(page)["state"] == "idle", 30)
    assert "publisher ended the session" in node.output()
    publish(page, audio=True)
    assert node.status()["reconnects"] == before + 1
    assert node.status()["source_state"] == "connected"


# --------------------------------------------------------------------------- bad clients


def raw_http(port: int, request: bytes, timeout: float = 30) -> int:
    """Send one raw HTTP request; the response's status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


def post_offer(port: int, body: bytes, ctype: str = "application/sdp") -> int:
    return raw_http(
        port,
        b"POST /whip/cam0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )


def dead_offer() -> str:
    """A valid offer whose peer is gone: its ICE never connects."""
    from aiortc import RTCPeerConnection, VideoStreamTrack

    from sam2long_stream.sources.webrtc_common import rtc_configuration

    async def make() -> str:
        pc = RTCPeerConnection(rtc_configuration())  # no STUN: nothing to reach here
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    # Playwright's sync API keeps an event loop on this thread: run aiortc on another.
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(make())))
    t.start()
    t.join(60)
    return out[0]


def test_bad_offers_do_not_end_a_waiting_node(browser: Any) -> None:
    n = NodeProcess()
    statuses: list[Any] = []
    sub = Subscriber(n.pub, topics=("status/",), stream_id="cam0")
    try:
        wait_for("status messages", lambda: sub.recv(1.0), 30)
        assert post_offer(n.whip_port, b"") == 400  # curl --data ''
        assert post_offer(n.whip_port, b"v=0\r\nnot an offer\r\n") == 400
        assert post_offer(n.whip_port, b"v=0\r\n", "text/plain") == 415
        assert post_offer(n.whip_port, dead_offer().encode()) == 201  # ICE never connects

        def rejected_dead() -> bool:
            msg = sub.recv(1.0)
            if msg is not None:
                statuses.append(msg)
            return any("gave up before video" in str(m.get("error")) for m in statuses)

        wait_for("the dead session is rejected", rejected_dead, 60)
        assert n.alive()
        assert [m.get("http_status") for m in statuses if m.state == "rejected"][:3] == [
            400,
            400,
            415,
        ]
        st = n.status()
        assert st["state"] == "waiting" and st["source_state"] not in ("error", "connected")
        assert n.healthz()["source_state"] != "error"
        # ... and a browser still publishes to it.
        ctx = browser.new_context()
        pg = ctx.new_page()
        pg.goto(n.base + "/")
        publish(pg, audio=False)
        pg.click("#hangup")
        ctx.close()
    finally:
        sub.close()
        assert n.stop() == 0


def test_bad_and_concurrent_offers_during_a_live_session(node: NodeProcess, page: Any) -> None:
    publish(page, audio=True)
    assert post_offer(node.whip_port, b"") == 400
    assert node.status()["source_state"] == "connected"
    assert node.healthz()["source_state"] == "connected"
    offer = dead_offer().encode()
    codes: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        code = post_offer(node.whip_port, offer)
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [409] * 30  # no token: the live publisher keeps the endpoint
    n = sam2(page)["masks"]
    wait_for("masks go on", lambda: sam2(page)["masks"] >= n + 3)
    assert sam2(page)["state"] == "connected"
    assert node.status()["source_state"] == "connected"


def test_slow_clients_are_bounded(node: NodeProcess, browser: Any) -> None:
    """300 connections trickling one header line every 2 s: at most 32 are admitted
    (per address), and those are closed after the 10 s header timeout."""
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()

    def slow() -> None:
        t0 = time.monotonic()
        result = "held"
        try:
            with socket.create_connection(("127.0.0.1", node.whip_port), timeout=60) as s:
                s.sendall(b"POST /whip/cam0 HTTP/1.1\r\n")
                for i in range(30):  # up to 60 s
                    s.settimeout(2.0)
                    try:
                        data = s.recv(100)
                    except TimeoutError:
                        s.sendall(f"X-{i}: slow\r\n".encode())
                        continue
                    result = data.split(b" ", 2)[1].decode() if data else "closed"
                    break
        except OSError:
            result = "reset"
        with lock:
            outcomes.append((result, time.monotonic() - t0))

    threads = [threading.Thread(target=slow) for _ in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    kinds = [k for k, _ in outcomes]
    assert len(outcomes) == 300 and "held" not in kinds
    # Refused at once: a 503, or a reset when the close overtook the reply.
    assert kinds.count("503") + kinds.count("reset") >= 300 - 32 and "503" in kinds
    assert 1 <= kinds.count("408") <= 32
    assert max(t for k, t in outcomes if k == "408") < 10 + 20  # generous on a busy box
    assert node.alive()
    ctx = browser.new_context()
    pg = ctx.new_page()
    try:
        pg.goto(node.base + "/")
        publish(pg, audio=False)  # the endpoint serves again
        pg.click("#hangup")
        wait_for("hang-up", lambda: pg.evaluate("sam2.location") is None, 30)
    finally:
        ctx.close()


def test_https_page_with_a_token(browser: Any, tmp_path: Path) -> None:
    """--tls-cert/--tls-key: the page, WHIP and the WebSocket over HTTPS; with a token,
    a page without it is refused and one given it in the URL fragment publishes."""
    from sam2long_stream.testing.tls import self_signed

    cert, key = self_signed(tmp_path)
    n = NodeProcess("--tls-cert", cert, "--tls-key", key, scheme="https", token="T0k")
    ctx = browser.new_context(ignore_https_errors=True)  # a self-signed test certificate
    try:
        pg = ctx.new_page()
        pg.goto(n.base + "/")
        assert pg.evaluate("window.isSecureContext") is True
        pg.click("#publish")
        wait_for("the refusal", lambda: sam2(pg)["state"] == "error", 60)
        assert "HTTP 401" in sam2(pg)["errors"][-1]
        assert pg.evaluate("sam2.wsOpen") is False  # no token: no masks either
        pg.goto(n.base + "/#token=T0k")
        pg.reload()
        wait_for("the WebSocket opens", lambda: pg.evaluate("sam2.wsOpen"), 30)
        publish(pg, audio=False)
        assert pg.evaluate("location.protocol") == "https:"
        # The node stops cleanly with a page publishing and its WebSocket open.
        t0 = time.monotonic()
        assert n.stop() == 0
        assert time.monotonic() - t0 < 30
        wait_for("the page notices", lambda: pg.evaluate("sam2.wsOpen") is False, 30)
    finally:
        ctx.close()
        n.stop()
