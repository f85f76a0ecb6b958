"""The one address for many shards: a ZeroMQ XSUB/XPUB proxy.

Its XSUB *connects* to every shard's PUB (shards bind as always) and to any other
``upstreams`` (other launchers' proxies: a fan-in); its XPUB binds the public address.
Subscriptions flow upstream, so a node still skips encoding masks nobody asked for.
Keys and the ZAP handler are `security`'s, the same code the node uses.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from sam2long_stream import security
from sam2long_stream.security import CurveKeys

log = logging.getLogger("sam2long_stream.supervisor")


@dataclass(frozen=True)
class Upstream:
    """A PUB/XPUB to read from; ``server_public`` set: it is a CURVE server."""

    address: str
    server_public: bytes | None = None


def connect_upstreams(
    sock: zmq.Socket, upstreams: Sequence[Upstream], client: CurveKeys | None
) -> None:
    """Connect ``sock`` to each upstream. libzmq takes the security options as they are
    at connect time, so plain upstreams are connected first, then each CURVE one with
    its server key."""
    for up in sorted(upstreams, key=lambda u: u.server_public is not None):
        if up.server_public is not None:
            if client is None:
                raise ValueError(f"{up.address} is a CURVE server: a client key is needed")
            security.apply_client(sock, CurveKeys(client.public, client.secret, up.server_public))
        sock.connect(up.address)


class Proxy:
    """XSUB (connects to every upstream PUB) -> XPUB (binds the one public address), run
    by `zmq.proxy_steerable` on a thread of its own, stopped over a PAIR socket.

    ``curve_secret`` (a secret key file) makes the public side a CURVE server, as on a
    node; ``curve_clients`` (a directory of public key files) then admits only those
    subscribers (without it: any subscriber that knows the server key). ``client_keys``
    is the keypair used towards upstreams that are CURVE servers.
    """

    def __init__(
        self,
        bind: str,
        upstreams: Sequence[Upstream | str] = (),
        *,
        hwm: int = 1000,
        curve_secret: str | None = None,
        curve_clients: str | None = None,
        client_keys: CurveKeys | None = None,
    ) -> None:
        self.bind = bind
        self.upstreams = [u if isinstance(u, Upstream) else Upstream(u) for u in upstreams]
        self.hwm = hwm
        self.curve_clients = curve_clients
        self.client_keys = client_keys
        self.endpoint: str | None = None
        self._server_keys = (
            security.load_secret(curve_secret, "proxy CURVE secret") if curve_secret else None
        )
        self._ctx = zmq.Context()
        self._auth: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._control_addr = f"inproc://sam2long-launch-proxy-{id(self):x}"
        self._control: zmq.Socket | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 10.0) -> str:
        """Bind and start forwarding; OSError when the public address cannot be bound,
        ValueError for a bad clients directory."""
        if self._server_keys is not None and self.curve_clients is not None:
            self._auth = security.start_authenticator(self._ctx, self.curve_clients)
        self._control = self._ctx.socket(zmq.PAIR)
        self._control.bind(self._control_addr)
        self._thread = threading.Thread(target=self._run, name="launch-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise OSError(f"proxy: cannot bind {self.bind}: {self._error or 'timed out'}")
        assert self.endpoint is not None
        return self.endpoint

    def _run(self) -> None:
        xsub = self._ctx.socket(zmq.XSUB)
        xpub = self._ctx.socket(zmq.XPUB)
        control = self._ctx.socket(zmq.PAIR)
        try:
            try:
                xpub.setsockopt(zmq.SNDHWM, self.hwm)
                xpub.setsockopt(zmq.LINGER, 0)
                xsub.setsockopt(zmq.LINGER, 0)
                if self._server_keys is not None:
                    security.apply_server(xpub, self._server_keys)
                xpub.bind(self.bind)
                self.endpoint = xpub.getsockopt_string(zmq.LAST_ENDPOINT)
                connect_upstreams(xsub, self.upstreams, self.client_keys)
                control.connect(self._control_addr)
            except (zmq.ZMQError, ValueError, OSError) as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            zmq.proxy_steerable(xsub, xpub, None, control)
        except zmq.ContextTerminated:
            pass
        except Exception as exc:  # the launcher's /healthz reports a dead proxy
            log.error("proxy stopped: %s", exc)
        finally:
            for sock in (xsub, xpub, control):
                sock.close(linger=0)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None and self._thread.is_alive() and self._control is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._control.send(b"TERMINATE", zmq.NOBLOCK)
            self._thread.join(timeout_s)
        if self._control is not None:
            self._control.close(linger=0)
            self._control = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._thread is None or not self._thread.is_alive():
            self._ctx.term()
