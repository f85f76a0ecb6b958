"""The node's bound sockets: the PUB socket (masks and status of every stream), the
control REP socket and the HTTP endpoint, and with CurveZMQ the ZeroMQ context and ZAP
authenticator they share. Binding happens in the constructor, so a bad address, a taken
port or a missing key fails there; `close` releases everything (idempotent)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from sam2long_stream import security
from sam2long_stream.control import ControlHandler, ControlServer
from sam2long_stream.health import HealthServer
from sam2long_stream.settings import NodeConfig
from sam2long_stream.transport import Publisher

log = logging.getLogger(__name__)


class Sockets:
    """See the module docstring. The publisher is the loop's alone (not thread-safe)."""

    def __init__(
        self,
        config: NodeConfig,
        handler: ControlHandler,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Callable[[], bytes],
    ) -> None:
        remote = config.remote_binds()  # the loopback rule (NodeConfig checked it too)
        self.control: ControlServer | None = None
        self.http: HealthServer | None = None
        self._context: zmq.Context | None = None  # own context: only with CurveZMQ
        self._authenticator: Any = None
        curve = None
        try:
            if config.curve_secret is not None:
                curve = security.load_secret(config.curve_secret, "node CURVE secret")
                security.check_clients_dir(config.curve_clients or "")
                # ZAP (who may connect) is per context: a context of our own, so nodes
                # in one process each keep their own list of clients.
                self._context = zmq.Context()
                self._authenticator = security.start_authenticator(
                    self._context, config.curve_clients or ""
                )
            self.publisher = Publisher(
                config.pub,
                config.streams[0].stream_id,
                hwm=config.hwm,
                encoding=config.encoding,
                context=self._context,
                curve=curve,
            )
            if config.control:
                self.control = ControlServer(
                    config.control, handler, context=self._context, curve=curve
                )
            if config.http:
                host, port = security.parse_http_address(config.http)
                self.http = HealthServer(host, port, health, metrics)
        except BaseException:
            self.close()
            raise
        self.endpoint: str = self.publisher.endpoint
        self.control_endpoint: str | None = self.control.endpoint if self.control else None
        self.http_endpoint: str | None = self.http.url if self.http else None
        exposed = [w for w in remote if w in ("HTTP endpoint", "WHIP listener") or curve is None]
        if exposed:
            log.warning(
                "%s reachable from other hosts without authentication%s",
                " and ".join(dict.fromkeys(exposed)),
                "" if curve is None else " (CurveZMQ covers the ZeroMQ sockets, not HTTP/WHIP)",
            )

    def start(self) -> None:
        """Serve control requests and HTTP."""
        if self.control is not None:
            self.control.start()
        if self.http is not None:
            self.http.start()

    def stop_control(self) -> None:
        if self.control is not None:
            self.control.stop()

    def close(self) -> None:
        """Close every socket; idempotent."""
        self.stop_control()
        publisher = getattr(self, "publisher", None)
        if publisher is not None:
            publisher.close()
        if self.http is not None:
            try:
                self.http.stop()
            except Exception as exc:
                log.warning("stopping the HTTP endpoint failed: %s", exc)
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._context is not None:
            ctx, self._context = self._context, None
            if self.control is not None and self.control.alive:
                log.warning("control thread still busy: leaving its ZeroMQ context open")
            else:
                ctx.term()  # every socket is closed: returns at once (after the linger)
