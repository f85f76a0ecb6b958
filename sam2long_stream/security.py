"""Who may reach a node: the loopback rule for bind addresses, and CurveZMQ keys.

A node runs unattended next to cameras, so by default every socket it binds (ZeroMQ PUB,
control REP, the HTTP health endpoint) listens on 127.0.0.1 only. Binding anywhere else
needs an explicit ``allow_remote``; without CurveZMQ that is logged as a warning, since
anyone on the network could then read the masks or steer the tracker.

CurveZMQ (pyzmq's CURVE, libsodium) gives encryption and authentication: the node holds a
secret key and a directory of authorised client public keys; a client needs its own
secret key and the node's public key. Key files are the ones
``zmq.auth.create_certificates`` writes (``NAME.key`` public, ``NAME.key_secret``
secret), made by ``sam2long-stream keys``.

Nothing here touches torch: the client SDK uses it too.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from sam2long_stream.limits import quote
from sam2long_stream.redact import redact_url

log = logging.getLogger(__name__)

REMOTE_HINT = "pass --allow-remote to serve other hosts (with --curve-secret/--curve-clients)"


@dataclass(frozen=True, repr=False)
class CurveKeys:
    """A keypair, plus the server's public key on the client side. ``repr`` hides the
    secret so it never lands in a log line."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None

    def __repr__(self) -> str:
        return f"CurveKeys(public={self.public.decode()!r}, secret=***)"


# --------------------------------------------------------------------------- addresses


def host_reach(host: str) -> str:
    """Who can reach a socket bound to ``host``: "loopback", "remote", or "unknown" (a
    name that resolves to nothing: the bind itself will fail and say so)."""
    h = host.strip("[]")
    if h == "*":
        return "remote"
    if h == "localhost":
        return "loopback"
    try:
        return "loopback" if ipaddress.ip_address(h.split("%")[0]).is_loopback else "remote"
    except ValueError:
        pass
    try:
        interfaces = {name for _, name in socket.if_nameindex()}
    except OSError:
        interfaces = set()
    if h in interfaces:  # ZeroMQ binds to an interface by name (tcp://eth0:5556)
        return "loopback" if h == "lo" else "remote"
    try:
        infos = socket.getaddrinfo(h, None)
    except (OSError, UnicodeError):
        return "unknown"
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return "loopback" if addresses and all(a.is_loopback for a in addresses) else "remote"


def zmq_bind_host(address: str) -> str | None:
    """The host part of a ZeroMQ bind address (``tcp://HOST:PORT``), or None for the
    transports that never leave the machine (``ipc://``, ``inproc://``). Raises
    ValueError for anything else, in one sentence."""
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(
            f"bad address {quote(address)}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5556)"
        )
    scheme, rest = address.split("://", 1)
    if scheme in ("ipc", "inproc"):
        if not rest:
            raise ValueError(f"bad address {quote(address)}: {scheme}:// needs a name")
        return None
    if scheme != "tcp":
        raise ValueError(
            f"bad address {quote(address)}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        )
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port == "*" or (_digits(port) and int(port) <= 65535)):
        raise ValueError(
            f"bad address {quote(address)}: expected tcp://HOST:PORT (PORT 0..65535 or *)"
        )
    if ";" in host:  # zmq's "source;destination" form is for connect, not bind
        raise ValueError(f"bad address {quote(address)}: a bind address has no ';'")
    if not _host_name(host):
        raise ValueError(f"bad address {quote(address)}: expected tcp://HOST:PORT, a host name")
    return host


def check_connect_address(address: str) -> str:
    """A ZeroMQ address a client connects to (``subscribe --pub``, ``prompt --control``),
    checked before any socket exists so a typo is a usage error, not a silent wait:
    ``tcp://HOST:PORT`` (PORT 1..65535; ZeroMQ's ``SOURCE;HOST:PORT`` too),
    ``ipc://PATH`` or ``inproc://NAME``. Returns it unchanged; ValueError in one sentence.
    A well-formed address with nobody behind it is not checked here: that is a timeout."""
    expected = "expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5556) or ipc://PATH"
    scheme, sep, rest = address.partition("://") if isinstance(address, str) else ("", "", "")
    if not sep:
        raise ValueError(f"bad address {quote(address)}: {expected}")
    if scheme in ("ipc", "inproc"):
        if not rest or not rest.isprintable() or len(rest) > 255:
            raise ValueError(
                f"bad address {quote(address)}: {scheme}:// needs a name (printable, at most "
                "255 characters)"
            )
        return address
    if scheme != "tcp":
        raise ValueError(f"bad address {quote(address)}: {expected}")
    host, colon, port = rest.rpartition(";")[2].rpartition(":")
    if not colon or not _digits(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"bad address {quote(address)}: expected tcp://HOST:PORT, PORT 1..65535")
    if host == "*":
        raise ValueError(
            f"bad address {quote(address)}: * is for binding; connect to a host, "
            "e.g. tcp://127.0.0.1:" + port
        )
    if not _host_name(host):
        raise ValueError(f"bad address {quote(address)}: expected tcp://HOST:PORT, a host name")
    return address


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes other scripts' digits)."""
    return text.isascii() and text.isdigit()


def _host_name(host: str) -> bool:
    """Could be a host, an address or an interface: 1..255 printable characters, no
    blank (a DNS name is at most 253)."""
    return 0 < len(host) <= 255 and host.isprintable() and " " not in host


def parse_http_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; port 0 picks a free one) -> (host, port)."""
    text = str(address).strip()
    if "://" in text:
        parts = urllib.parse.urlsplit(text)
        if parts.scheme != "http" or parts.path not in ("", "/"):
            raise ValueError(f"bad HTTP address {quote(address)}: expected HOST:PORT")
        text = parts.netloc
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not _host_name(host) or not _digits(port) or int(port) > 65535:
        raise ValueError(
            f"bad HTTP address {quote(address)}: expected HOST:PORT, e.g. 127.0.0.1:8080"
        )
    return host, int(port)


def source_listener(source: str) -> tuple[str, str] | None:
    """``(HOST:PORT, HOST)`` where a source URL makes the node listen (``whip://``: the
    WHIP endpoint and its browser page), else None. No token or query in the result."""
    text = source.strip()
    if not text.lower().startswith("whip://"):
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname or "127.0.0.1"
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ValueError(f"bad whip:// URL {quote(redact_url(text))}: {exc}") from None
    try:
        port = parts.port if parts.port is not None else 8080
    except ValueError:
        raise ValueError(f"bad whip:// URL: the port is not a number in {host}") from None
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}", host


def check_bind(what: str, address: str, host: str | None, allow_remote: bool) -> bool:
    """Enforce the loopback rule for one socket; True when other hosts can reach it.
    ``host`` None means a local-only transport."""
    if host is None or host_reach(host) != "remote":
        return False
    if not allow_remote:
        raise ValueError(
            f"refusing to bind the {what} to {address}: not a loopback address; {REMOTE_HINT}"
        )
    return True


def fixed_endpoint(address: str) -> tuple[tuple[str, str], str | None]:
    """(what it occupies, tcp host or None) of a ZeroMQ bind address another process
    must connect to: ``(("tcp", PORT), HOST)`` or ``(("ipc", PATH), None)``. A wildcard
    or zero port, and ``inproc://``, are refused: nobody outside could find them."""
    host = zmq_bind_host(address)
    scheme, rest = address.split("://", 1)
    if scheme == "ipc" and "*" not in rest:
        return ("ipc", rest), None
    if scheme == "tcp":
        port = rest.rpartition(":")[2]
        if _digits(port) and int(port) > 0:
            return ("tcp", port), host
    raise ValueError(
        f"bad address {quote(address)}: expected tcp://HOST:PORT with a fixed port, or ipc://PATH"
    )


def http_endpoint(address: str) -> tuple[tuple[str, str], str]:
    """(what it occupies, host) of an HTTP ``HOST:PORT`` that must have a fixed port."""
    host, port = parse_http_address(address)
    if port == 0:
        raise ValueError(f"bad HTTP address {quote(address)}: expected a fixed port (not 0)")
    return ("tcp", str(port)), host


def reachable_from_outside(host: str | None) -> bool:
    """Whether a socket bound to ``host`` may be reached from other machines. Unlike
    `check_bind`, a name that resolves to nothing counts as remote: a configuration is
    checked before it runs, maybe on another machine."""
    return host is not None and host_reach(host) != "loopback"


def connect_address(bind_address: str) -> str:
    """Where a process on this machine connects to reach ``bind_address``: wildcard
    hosts become loopback, anything else is returned as is."""
    if bind_address.startswith("tcp://"):
        host, _, port = bind_address[len("tcp://") :].rpartition(":")
        if host in ("*", "0.0.0.0"):
            host = "127.0.0.1"
        elif host in ("[::]", "::", "[*]"):
            host = "[::1]"
        return f"tcp://{host}:{port}"
    return bind_address


# --------------------------------------------------------------------------- CURVE keys


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise ValueError("this libzmq has no CURVE support (it needs libsodium)")


def _read_cert(path: str | os.PathLike[str], kind: str) -> tuple[bytes, bytes | None]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{kind} key file not found: {p}")
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {kind} key file {p}: {exc}") from None
    for key in (public, secret):
        if key is not None and len(key) != 40:
            raise ValueError(f"{kind} key file {p} does not hold a Z85 CURVE key")
    return public, secret


def load_secret(path: str | os.PathLike[str], kind: str = "CURVE secret") -> CurveKeys:
    """A keypair from a ``.key_secret`` file."""
    _require_curve()
    public, secret = _read_cert(path, kind)
    if secret is None:
        raise ValueError(
            f"{path} holds no secret key: pass the .key_secret file, not the public .key"
        )
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("CURVE secret key %s is readable by other users (chmod 600 it)", path)
    return CurveKeys(public, secret)


def load_public(path: str | os.PathLike[str], kind: str = "CURVE server") -> bytes:
    """The public key from a ``.key`` (or ``.key_secret``) file."""
    _require_curve()
    return _read_cert(path, kind)[0]


def client_keys(secret_path: str | None, server_path: str | None) -> CurveKeys | None:
    """A client's keys from ``--curve-secret`` and ``--curve-server``; both or neither."""
    if secret_path is None and server_path is None:
        return None
    if secret_path is None or server_path is None:
        raise ValueError("CURVE needs both --curve-secret (yours) and --curve-server (the node's)")
    keys = load_secret(secret_path, "CURVE client secret")
    return CurveKeys(keys.public, keys.secret, load_public(server_path, "CURVE server public"))


def check_clients_dir(path: str | os.PathLike[str]) -> Path:
    """The authorised-clients directory must exist and hold at least one public key."""
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"CURVE clients directory not found: {p}")
    if not any(f.suffix == ".key" for f in p.iterdir()):
        raise ValueError(f"CURVE clients directory {p} holds no public .key file")
    return p


def apply_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make a socket a CURVE server (before bind)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def apply_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make a socket a CURVE client of the server ``keys.server_public`` (before connect)."""
    if keys.server_public is None:
        raise ValueError("a CURVE client needs the server's public key")
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public


def start_authenticator(context: zmq.Context, clients_dir: str | os.PathLike[str]) -> object:
    """A ZAP handler on ``context`` that admits only the public keys in ``clients_dir``
    (read once, now). One per context: ZAP is per context, so a node with CURVE has a
    context of its own. Returns the authenticator (``.stop()`` it)."""
    from zmq.auth.thread import ThreadAuthenticator

    directory = check_clients_dir(clients_dir)
    auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
    auth.start()
    auth.configure_curve(domain="*", location=str(directory))
    return auth


def create_keys(
    out_dir: str | os.PathLike[str], name: str, force: bool = False
) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 600) into ``out_dir``."""
    _require_curve()
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}: a plain file name, e.g. node or client1")
    out = Path(out_dir)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    existing = [str(p) for p in (public, secret) if p.exists()]
    if existing and not force:
        raise ValueError(f"{' and '.join(existing)} already exist (use --force to replace)")
    out.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(out, name)
    finally:
        os.umask(old)
    secret.chmod(0o600)
    public.chmod(0o644)
    return public, secret
