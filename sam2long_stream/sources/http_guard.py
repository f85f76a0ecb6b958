"""Connection limits for the node's HTTP listener (WHIP endpoint and the browser page).

aiohttp has no deadline for a request's headers: a client that trickles one header line
every few seconds holds its connection open for as long as it likes, and enough of them
exhaust the process (slowloris). `GuardedSite` is a `web.TCPSite` whose connections go
through `_GuardedProtocol`, which

* refuses a connection over ``max_connections`` in all or ``max_per_address`` from one
  peer address with ``503`` and closes it;
* closes a connection that has not delivered a complete request head within
  ``header_timeout_s`` of connecting or of its previous response (``408``). The clock
  stops while a handler runs (`guard_middleware`), so a long-lived WebSocket is not cut;
  handlers bound their own body reads (`read_body`).

TLS handshakes are bounded by the same timeout (``ssl_handshake_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 22\r\nConnection: close\r\n\r\ntoo many connections\r\n"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 17\r\nConnection: close\r\n\r\nrequest too slow\n"
)


class ConnectionGuard:
    """Counts live connections and owns their header deadlines (one loop thread)."""

    def __init__(
        self,
        max_connections: int = 128,
        max_per_address: int = 32,
        header_timeout_s: float = 10.0,
        body_timeout_s: float = 10.0,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.refused = 0  # connections refused over a cap
        self.timed_out = 0  # connections closed for a slow request head
        self._by_transport: dict[int, _GuardedProtocol] = {}
        self._per_address: Counter[str] = Counter()

    @property
    def connections(self) -> int:
        return len(self._by_transport)

    def _admit(self, proto: _GuardedProtocol) -> bool:
        addr = proto.address
        if (
            len(self._by_transport) >= self.max_connections
            or self._per_address[addr] >= self.max_per_address
        ):
            self.refused += 1
            return False
        self._by_transport[id(proto.transport)] = proto
        self._per_address[addr] += 1
        return True

    def _release(self, proto: _GuardedProtocol) -> None:
        if self._by_transport.pop(id(proto.transport), None) is not None:
            self._per_address[proto.address] -= 1
            if self._per_address[proto.address] <= 0:
                del self._per_address[proto.address]

    def lookup(self, transport: Any) -> _GuardedProtocol | None:
        return self._by_transport.get(id(transport))


class _GuardedProtocol(asyncio.Protocol):
    """Wraps aiohttp's RequestHandler: admission, and the header deadline."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: Any = None
        self.address = "?"
        self.admitted = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self.guard._admit(self):
            with contextlib.suppress(Exception):
                transport.write(_REFUSED)  # type: ignore[attr-defined]
            transport.close()
            return
        self.admitted = True
        self.arm()
        self.inner.connection_made(transport)

    def arm(self) -> None:
        """Start (again) the clock for the next request head."""
        self.disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.header_timeout_s, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        self.guard.timed_out += 1
        log.info("http: closing a connection from %s: request head too slow", self.address)
        with contextlib.suppress(Exception):
            self.transport.write(_TIMED_OUT)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.admitted:
            return self.inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.admitted:
            self.guard._release(self)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


def guard_middleware(guard: ConnectionGuard) -> Any:
    """Stops a connection's header clock while its request is handled, restarts it after."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        proto = guard.lookup(request.transport)
        if proto is not None:
            proto.disarm()
        try:
            return await handler(request)
        finally:
            if proto is not None and proto.transport and not proto.transport.is_closing():
                proto.arm()

    return middleware


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The request body, or HTTP 408 when it does not arrive within ``timeout_s``."""
    try:
        return await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        why = f"request body not received within {timeout_s:g} s\n"
        raise web.HTTPRequestTimeout(text=why) from None


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through the guard."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        self._guard = guard

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        guard = self._guard

        def factory() -> asyncio.Protocol:
            return _GuardedProtocol(guard, server())

        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            ssl_handshake_timeout=guard.header_timeout_s if self._ssl_context else None,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        else:
            self._bound_port = self._port
