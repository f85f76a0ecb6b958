"""WHIP ingest: the node serves a WHIP endpoint so a browser or encoder can push a camera."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from sam2long_stream.sources.base import EventCallback, FrameCallback, FrameSource
from sam2long_stream.sources.http_guard import (
    ConnectionGuard,
    GuardedSite,
    guard_middleware,
    read_body,
)
from sam2long_stream.sources.webrtc_common import (
    Emitter,
    LoopThread,
    consume_video,
    default_ice_addresses,
    drain_track,
    one_line,
    rtc_configuration,
)

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 256 << 10  # an SDP offer is a few KiB; aiohttp answers 413 above this

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
}


@dataclass
class _Session:
    sid: str
    pc: Any
    remote: str | None
    connected: bool = False  # delivered its first video frame: a live publisher
    ended: bool = False
    has_video: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class WhipSource(FrameSource):
    """Serves `POST {path}` (WHIP) and turns the pushed video into frames.

    One publisher at a time. Policy for a new offer while a session exists:

    * no bearer token configured: while a publisher is live (it has delivered video),
      a new offer gets **409 Conflict** and the live publisher keeps going; a session
      still connecting (answered, no video yet) is replaced by the newer offer;
    * a token configured (`?token=...`): every offer is authenticated, and the newest
      usable one replaces the current session (a publisher holding the token may take
      the endpoint over, e.g. to re-offer after a network change).

    A publisher's mistakes never end the source: a malformed or video-less offer gets 4xx,
    a session whose ICE never connects is dropped after `connect_timeout_s`; each is a
    ``rejected`` event (not ``error``, which would be fatal before the first frame and
    would mark the source as down). A publisher that disappears without DELETE is noticed
    by `idle_timeout_s` without frames. The listener bounds its connections (see
    `http_guard`); with `tls_cert`/`tls_key` it speaks HTTPS.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        path: str = "/whip/cam0",
        token: str | None = None,
        idle_timeout_s: float = 3.0,
        connect_timeout_s: float = 10.0,
        ice_addresses: Sequence[str] | Literal["auto"] | None = "auto",
        tls_cert: str | None = None,
        tls_key: str | None = None,
        header_timeout_s: float = 10.0,
        body_timeout_s: float = 10.0,
        max_connections: int = 128,
        max_connections_per_address: int = 32,
    ) -> None:
        self.host = host
        self.port = port
        self.path = "/" + path.strip("/")
        self.token = token
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        # Loopback endpoint -> loopback-only ICE candidates (see webrtc_common).
        self.ice_addresses = (
            default_ice_addresses(host) if ice_addresses == "auto" else ice_addresses
        )
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self._ssl = _ssl_context(tls_cert, tls_key)  # ValueError: one line
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self.guard = ConnectionGuard(
            max_connections, max_connections_per_address, header_timeout_s, body_timeout_s
        )
        self.page: Any = None  # a web.PageConfig: the node attaches one (attach_page)
        self._loop: LoopThread | None = None
        self._emitter: Emitter | None = None
        self._runner: web.AppRunner | None = None
        self._session: _Session | None = None
        self._post_lock: asyncio.Lock | None = None
        self.rejected = 0  # offers and sessions refused (each also a "rejected" event)

    @classmethod
    def from_url(cls, url: str) -> WhipSource:
        """`whip://host:port/path[?token=...&idle_timeout=...]` -> a WhipSource."""
        parts = urlsplit(url)
        if parts.scheme != "whip":
            raise ValueError(f"not a whip:// URL: {url}")
        query = parse_qs(parts.query)
        kwargs: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port if parts.port is not None else 8080,
            "path": parts.path if parts.path not in ("", "/") else "/whip/cam0",
        }
        if "token" in query:
            kwargs["token"] = query["token"][0]
        if "idle_timeout" in query:
            kwargs["idle_timeout_s"] = float(query["idle_timeout"][0])
        return cls(**kwargs)

    @property
    def base_url(self) -> str:
        """http(s)://host:port of the listener (the browser page is at ``/``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The HTTP endpoint publishers POST their offer to."""
        return self.base_url + self.path

    def attach_page(self, page: Any) -> None:
        """Serve the browser page (sam2long_stream.web) on this listener; before `start`."""
        self.page = page

    # -- FrameSource ------------------------------------------------------------------

    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        """Bind the HTTP endpoint (waits for the bind, ~ms) and return."""
        if self._loop is not None:
            return
        self._emitter = Emitter(f"whip {self.path}", on_frame, on_event)
        self._loop = LoopThread(f"whip-{self.port}", self.ice_addresses)
        self._loop.start()
        try:
            self._loop.call(self._serve(), timeout=5.0)
        except Exception as exc:
            self._emitter.error(f"cannot serve WHIP on {self.host}:{self.port}: {one_line(exc)}")
            self._loop.stop()
            self._loop = None

    def stop(self) -> None:
        """End the session (no DELETE needed from the publisher) and close the endpoint."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.call(self._shutdown(), timeout=2.5)
        except Exception as exc:
            log.warning("whip %s: shutdown incomplete: %s", self.path, one_line(exc))
        loop.stop(timeout=1.0)

    # -- server -----------------------------------------------------------------------

    async def _serve(self) -> None:
        self._post_lock = asyncio.Lock()
        app = web.Application(
            middlewares=[guard_middleware(self.guard), self._cors_middleware],
            client_max_size=MAX_OFFER_BYTES,
        )
        app.router.add_route("POST", self.path, self._on_post)
        app.router.add_route("OPTIONS", self.path, _on_options)
        resource = self.path + "/{sid}"
        app.router.add_route("DELETE", resource, self._on_delete)
        app.router.add_route("PATCH", resource, _on_patch)
        app.router.add_route("OPTIONS", resource, _on_options)
        if self.page is not None:
            from sam2long_stream.web import mount_page

            mount_page(app, self.page, whip_path=self.path, token=self.token)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.header_timeout_s,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            site = GuardedSite(runner, self.host, self.port, self.guard, self._ssl)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = int(site.port)
        if self.page is not None:
            log.info("whip: listening on %s; browser page: %s/", self.url, self.base_url)
        else:
            log.info("whip: listening on %s", self.url)

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._end_session(self._session, "source stopped")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        return request.headers.get("Authorization", "") == f"Bearer {self.token}"

    def _reject(self, request: web.Request, status: int, why: str) -> web.Response:
        """Refuse one offer: 4xx to the publisher, a "rejected" event, nothing else."""
        assert self._emitter is not None
        self.rejected += 1
        msg = f"rejected a WHIP offer from {request.remote}: {why}"
        log.warning("whip %s: %s", self.path, msg)
        self._emitter.event("rejected", message=msg, http_status=status, remote=request.remote)
        return web.Response(status=status, text=msg + "\n")

    @web.middleware
    async def _cors_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Browsers may push from another origin; let them read Location."""
        resp = await handler(request)
        if request.path == self.path or request.path.startswith(self.path + "/"):
            resp.headers.update(_CORS)
        return resp

    async def _on_post(self, request: web.Request) -> web.StreamResponse:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        assert self._emitter is not None and self._post_lock is not None
        if not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/sdp":
            return self._reject(request, 415, "WHIP offers must be application/sdp")
        raw = await read_body(request, self.body_timeout_s)
        try:
            offer = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._reject(request, 400, "the offer is not UTF-8 text")
        if not offer.strip():
            return self._reject(request, 400, "the offer is empty")
        async with self._post_lock:
            live = self._session
            if live is not None and live.connected and not self.token:
                return self._reject(
                    request,
                    409,
                    "a publisher is live on this endpoint (DELETE its session first, "
                    "or configure a token: a publisher holding it may replace the live one)",
                )
            pc = RTCPeerConnection(rtc_configuration())
            sess = _Session(sid=uuid.uuid4().hex, pc=pc, remote=request.remote)

            @pc.on("track")
            def _on_track(track: Any) -> None:
                # Browsers list audio first (getUserMedia({audio, video})): only the
                # first *video* track feeds the tracker; anything else is drained.
                if track.kind == "video" and not sess.has_video:
                    sess.has_video = True
                    sess.tasks.append(asyncio.ensure_future(self._consume(sess, track)))
                else:
                    sess.tasks.append(asyncio.ensure_future(drain_track(track)))

            @pc.on("connectionstatechange")
            def _on_state() -> None:
                if pc.connectionState in ("failed", "closed") and not sess.ended:
                    reason = f"peer connection {pc.connectionState}"
                    sess.tasks.append(asyncio.ensure_future(self._end_session(sess, reason)))

            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
                if not sess.has_video:
                    raise ValueError("the offer has no video to receive")
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                sess.ended = True
                for task in sess.tasks:
                    task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 2.0)
                return self._reject(request, 400, one_line(exc))
            # Only a usable offer replaces the current session (see the class doc).
            if self._session is not None:
                await self._end_session(self._session, "replaced by a new publisher")
            self._session = sess
            log.info("whip %s: session %s from %s", self.path, sess.sid, request.remote)
            return web.Response(
                status=201,
                text=pc.localDescription.sdp,
                content_type="application/sdp",
                headers={"Location": f"{self.path}/{sess.sid}", "ETag": f'"{sess.sid}"'},
            )

    async def _on_delete(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        sess = self._session
        if sess is None or sess.sid != request.match_info["sid"]:
            return web.Response(status=404)
        await self._end_session(sess, "publisher ended the session")
        return web.Response(status=200)

    # -- sessions ---------------------------------------------------------------------

    async def _consume(self, sess: _Session, track: Any) -> None:
        assert self._emitter is not None

        def first() -> None:
            sess.connected = True

        reason = await consume_video(
            track,
            self._emitter,
            self.idle_timeout_s,
            self.connect_timeout_s,
            first,
            lambda: not sess.ended,
            session=sess.sid,
            remote=sess.remote,
        )
        await self._end_session(sess, reason)

    async def _end_session(self, sess: _Session, reason: str) -> None:
        """Idempotent: emit one event for the session, then close its peer connection."""
        assert self._emitter is not None
        if sess.ended:
            return
        sess.ended = True
        if self._session is sess:
            self._session = None
        if sess.connected:
            self._emitter.event("disconnected", reason=reason, session=sess.sid)
        elif "replaced" not in reason and "stopped" not in reason and "ended" not in reason:
            # The publisher's problem (ICE never connected, no video): not the source's.
            self.rejected += 1
            msg = f"WHIP publisher {sess.remote} gave up before video: {reason}"
            log.warning("whip %s: %s", self.path, msg)
            self._emitter.event("rejected", message=msg, session=sess.sid, remote=sess.remote)
        self._emitter.new_session()
        current = asyncio.current_task()
        for task in sess.tasks:
            if task is not current:
                task.cancel()
        try:
            await asyncio.wait_for(sess.pc.close(), 2.0)
        except Exception as exc:
            log.debug("whip %s: closing session %s: %s", self.path, sess.sid, one_line(exc))


def _ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files, or None; one-line ValueError for bad files."""
    if cert is None and key is None:
        return None
    if not cert or not key:
        raise ValueError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    for what, path in (("certificate", cert), ("key", key)):
        if not os.path.isfile(path):
            raise ValueError(f"TLS {what} file not found: {path}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot use TLS certificate {cert} with key {key}: {exc}") from None
    return ctx


async def _on_options(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Accept-Post": "application/sdp"})


async def _on_patch(request: web.Request) -> web.StreamResponse:
    # Trickle ICE is not supported: the answer already carries every candidate.
    return web.Response(status=405, headers={"Allow": "DELETE, OPTIONS"})
