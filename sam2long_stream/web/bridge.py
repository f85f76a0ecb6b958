"""Routes of the browser page: ``GET /`` (HTML), ``GET /app.js`` and ``GET /ws``.

One WebSocket per open page. Each has a thread with its own `Subscriber` on the node's
PUB socket (masks and status of this stream); the thread turns each message into page
JSON and hands it to the listener's event loop, which sends it. A page that reads slowly
gets the newest masks message, not a backlog (older ones are replaced while waiting).
Requests from the page (a box, clear, remove) go through one `ControlClient`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from sam2long_stream.transport.subscriber import Subscriber
from sam2long_stream.transport.wire import MasksMessage, Message, StatusMessage, rle_from_mask

log = logging.getLogger(__name__)

MAX_PAGES = 8  # open WebSockets at once; more get 503
MAX_PAGE_MESSAGE = 4096  # bytes of one message from the page
_STATUS_BACKLOG = 16


@dataclass(frozen=True)
class PageConfig:
    """Where the page's bridge finds the node: its PUB and control endpoints."""

    pub: str
    control: str | None
    stream_id: str
    curve: bool = False  # CurveZMQ on: the bridge holds no client key, so no masks/control


def connect_address(endpoint: str) -> str:
    """A bound ZeroMQ endpoint as an address to connect to (wildcards -> loopback)."""
    if not endpoint.startswith("tcp://"):
        return endpoint
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"tcp://{host}:{port}"


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def page_message(msg: Message) -> dict[str, Any]:
    """A wire message as the page's JSON: masks keep the wire's COCO RLE counts string
    per object (a ``bits`` node's masks are re-encoded as RLE); status is passed on."""
    if isinstance(msg, StatusMessage):
        return {"type": "status", **{k: v for k, v in msg.header.items() if k != "type"}}
    assert isinstance(msg, MasksMessage)
    objects = []
    for i, obj in enumerate(msg.objects):
        if obj.get("encoding") == "rle":
            rle = msg.frames[i].decode("ascii")
        else:
            rle = rle_from_mask(msg.mask(obj["id"]))
        objects.append(
            {
                "id": obj["id"],
                "present": obj["present"],
                "score": _num(obj.get("iou")),
                "object_score_logit": _num(obj.get("object_score_logit")),
                "area": obj["area"],
                "bbox": obj["bbox"],
                "rle": rle,
            }
        )
    return {
        "type": "masks",
        "stream_id": msg.stream_id,
        "seq": msg.seq,
        "frame_index": msg.frame_index,
        "width": msg.width,
        "height": msg.height,
        "capture_time_ns": msg.capture_time_ns,
        "publish_time_ns": msg.publish_time_ns,
        "node_latency_ms": round(msg.node_latency_ms, 2),
        "sent_time_ns": time.time_ns(),
        "objects": objects,
    }


def _static(name: str) -> bytes:
    return resources.files("sam2long_stream.web").joinpath("static", name).read_bytes()


class _PageFeed:
    """One page's Subscriber thread and what waits to be sent to it."""

    def __init__(self, page: PageConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.page = page
        self.loop = loop
        self.masks: str | None = None  # newest masks message not yet sent
        self.status: collections.deque[str] = collections.deque(maxlen=_STATUS_BACKLOG)
        self.ready = asyncio.Event()
        self.replaced = 0  # masks messages replaced by a newer one before sending
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="page-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        try:
            sub = Subscriber(
                connect_address(self.page.pub),
                topics=("masks/", "status/"),
                stream_id=self.page.stream_id,
                hwm=8,
            )
        except ValueError as exc:
            log.warning("page: cannot subscribe to %s: %s", self.page.pub, exc)
            return
        try:
            while not self._stop.is_set():
                msg = sub.recv(timeout_s=0.2)
                if msg is None:
                    continue
                text = json.dumps(page_message(msg), separators=(",", ":"))
                kind = "masks" if isinstance(msg, MasksMessage) else "status"
                with contextlib.suppress(RuntimeError):  # the loop closed: we are stopping
                    self.loop.call_soon_threadsafe(self._put, kind, text)
        finally:
            sub.close()

    def _put(self, kind: str, text: str) -> None:
        if kind == "masks":
            if self.masks is not None:
                self.replaced += 1
            self.masks = text
        else:
            self.status.append(text)
        self.ready.set()

    async def pump(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            await self.ready.wait()
            self.ready.clear()
            while self.status:
                await ws.send_str(self.status.popleft())
            if self.masks is not None:
                text, self.masks = self.masks, None
                await ws.send_str(text)


class _Bridge:
    def __init__(self, page: PageConfig, whip_path: str, token: str | None) -> None:
        self.page = page
        self.whip_path = whip_path
        self.token = token
        self.pages = 0
        self._control: Any = None
        self._control_lock = threading.Lock()
        self._sockets: set[web.WebSocketResponse] = set()

    # -- static -----------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        config = {
            "whip_path": self.whip_path,
            "stream_id": self.page.stream_id,
            "token_required": bool(self.token),
            "control": self.page.control is not None and not self.page.curve,
            "masks": not self.page.curve,
        }
        # "<" escaped so no value can close the script element.
        blob = json.dumps(config).replace("<", "\\u003c")
        html = _static("index.html").decode().replace("__CONFIG__", blob)
        return web.Response(
            text=html,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def script(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=_static("app.js"),
            content_type="application/javascript",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    # -- WebSocket --------------------------------------------------------------------

    def _allowed(self, request: web.Request) -> str | None:
        """None when this WebSocket may open, else why not."""
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return "cross-origin WebSocket refused"
        if self.token:
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "token required"
        return None

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        why = self._allowed(request)
        if why is not None:
            return web.Response(status=403, text=why + "\n")
        if self.pages >= MAX_PAGES:
            return web.Response(status=503, text=f"at most {MAX_PAGES} pages at once\n")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_PAGE_MESSAGE)
        await ws.prepare(request)
        self.pages += 1
        self._sockets.add(ws)
        feed: _PageFeed | None = None
        pump: asyncio.Task[None] | None = None
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "stream_id": self.page.stream_id,
                    "masks": not self.page.curve,
                    "control": self.page.control is not None and not self.page.curve,
                    "note": "CurveZMQ is on: the page cannot read masks or send prompts"
                    if self.page.curve
                    else None,
                }
            )
            if not self.page.curve:
                feed = _PageFeed(self.page, asyncio.get_running_loop())
                feed.start()
                pump = asyncio.ensure_future(feed.pump(ws))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                reply = await self._on_page_message(msg.data)
                if reply is not None:
                    await ws.send_json(reply)
        finally:
            self.pages -= 1
            self._sockets.discard(ws)
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
            if feed is not None:
                await asyncio.get_running_loop().run_in_executor(None, feed.stop)
        return ws

    async def close_all(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"node stopping")
        if self._control is not None:
            self._control.close()

    async def _on_page_message(self, data: str) -> dict[str, Any] | None:
        try:
            req = json.loads(data)
        except ValueError:
            return {"type": "reply", "ok": False, "error": "not JSON"}
        if not isinstance(req, dict):
            return {"type": "reply", "ok": False, "error": "expected a JSON object"}
        kind = req.get("type")
        if kind == "ping":
            return {"type": "pong", "t": _num(req.get("t")), "server_ms": time.time_ns() / 1e6}
        if kind not in ("add_box", "reset", "remove"):
            return {"type": "reply", "ok": False, "error": f"unknown request type {kind!r}"}
        out: dict[str, Any] = {"type": "reply", "op": kind, "ref": req.get("ref")}
        if self.page.curve or self.page.control is None:
            out.update(ok=False, error="this node has no control socket the page can use")
            return out
        loop = asyncio.get_running_loop()
        try:
            reply = await loop.run_in_executor(None, self._control_call, kind, req)
        except Exception as exc:  # ControlError (the node said no), TimeoutError, ...
            out.update(ok=False, error=str(exc) or type(exc).__name__)
            return out
        out.update(reply)
        out["ok"] = True
        return out

    def _control_call(self, kind: str, req: dict[str, Any]) -> dict[str, Any]:
        from sam2long_stream.control import ControlClient

        with self._control_lock:
            if self._control is None:
                assert self.page.control is not None
                self._control = ControlClient(
                    connect_address(self.page.control), timeout_s=5.0, stream=self.page.stream_id
                )
        if kind == "reset":
            return self._control.reset()
        if kind == "remove":
            return self._control.remove_object(req.get("object_id"))
        box = req.get("box")
        if not isinstance(box, list) or len(box) != 4 or any(_num(v) is None for v in box):
            raise ValueError("box must be [x0, y0, x1, y1] in frame pixels")
        object_id = req.get("object_id")
        return self._control.add_object(object_id, box=box)


async def _no_content(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


def mount_page(
    app: web.Application,
    page: PageConfig,
    *,
    whip_path: str,
    token: str | None = None,
) -> None:
    """Add ``GET /``, ``GET /app.js`` and ``GET /ws`` to the WHIP listener's app."""
    bridge = _Bridge(page, whip_path, token)
    app.router.add_get("/", bridge.index)
    app.router.add_get("/app.js", bridge.script)
    app.router.add_get("/ws", bridge.websocket)
    app.router.add_get("/favicon.ico", _no_content)
    app.on_shutdown.append(bridge.close_all)
