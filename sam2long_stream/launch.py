"""`sam2long-stream launch site.toml`: many tracker nodes on one machine, one address out.

Each ``[[streams]]`` table of the launch file becomes one ``sam2long-stream run --config
<stream>.toml`` process: the stream's table *is* a node config (the keys of ``run``,
see launch/node.example.toml), written out per stream, so the node is not re-implemented
here and a node started by hand behaves the same. The launcher

* restarts a node that exits with an error (or is killed) after a capped exponential
  backoff, reset once the node has stayed up ``restart_reset_after_s``;
* kills and restarts a node whose status went silent for ``hang_timeout_s`` (a wedged
  GPU or decoder: the process lives but its loop does not);
* forwards SIGTERM/SIGINT to every node, waits ``stop_timeout_s``, SIGKILLs the rest and
  reaps them all. Nodes run in their own session (a Ctrl-C reaches only the launcher,
  which then stops each node once) and, on Linux, die with the launcher even when it is
  SIGKILLed (PR_SET_PDEATHSIG), so no node outlives it;
* with ``[proxy]``, runs a ZeroMQ XSUB/XPUB proxy: its XSUB *connects* to every node's PUB
  (nodes bind as always, no node change) and its XPUB binds the one public address, so a
  subscriber connects once and gets every stream. Subscriptions flow upstream, so nodes
  still skip encoding masks nobody asked for. ``upstreams`` adds other proxies, which
  makes the same proxy a fan-in for many machines (see docs/deploy.md);
* subscribes to every node's ``status/`` topic (directly, not through the proxy, so a
  CURVE-secured public address needs no keys inside the launcher and a proxy fault never
  looks like a hung node) and prints a table about once a second; ``--http HOST:PORT``
  serves ``/healthz``, ``/readyz`` and ``/metrics`` for the whole launch.

Not thread-safe: a Launcher runs on the thread that calls `run` (the main thread when
it handles signals: PR_SET_PDEATHSIG follows the thread that spawned the node).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import zmq
import zmq.auth

from sam2long_stream.transport import wire

PROG = "sam2long-stream launch"
log = logging.getLogger("sam2long_stream.launch")  # also when run as __main__

RESTART_POLICIES = ("on-failure", "always", "never")
# Keys a stream table may hold besides the node's own (`cli.RUN_OPTIONS` and prompts):
# they become flags of `run`, or tell the launcher how to run the process.
STREAM_LAUNCH_KEYS: dict[str, str] = {
    "http": "HOST:PORT for the node's own /healthz and /metrics (run --http)",
    "allow_remote": "bind non-loopback addresses (run --allow-remote)",
    "args": "more `run` flags, a list of strings",
    "env": "environment variables for this node, a table of strings",
    "restart": "on-failure (default), always or never",
}
LAUNCHER_DEFAULTS: dict[str, Any] = {
    "restart_delay_s": 1.0,  # first restart waits this long, then doubles
    "restart_max_delay_s": 30.0,  # ... up to this
    "restart_reset_after_s": 60.0,  # a node up this long starts the backoff afresh
    "stop_timeout_s": 10.0,  # SIGTERM -> SIGKILL
    "hang_timeout_s": 60.0,  # no status for this long: kill and restart (0: never)
    "table_interval_s": 1.0,
    "http": None,  # HOST:PORT for the launcher's /healthz, /readyz, /metrics
    "allow_remote": False,  # let proxy/http bind non-loopback addresses
    "run_dir": None,  # where the per-stream node TOML files go (default: a temp dir)
    "log_dir": None,  # per-stream log files instead of prefixed lines on stderr
    # The launcher's own CURVE secret key file: it connects with it to nodes that run with
    # curve_secret (its NAME.key must be in their curve_clients) and to CURVE upstreams.
    "curve_secret": None,
}
PROXY_DEFAULTS: dict[str, Any] = {
    "bind": None,  # the one address subscribers connect to (required)
    "upstreams": [],  # more PUB/XPUB addresses to forward (other launchers' proxies)
    "hwm": 1000,  # messages queued per subscriber before that subscriber loses some
    # CurveZMQ on `bind`, as on a node: the proxy's secret key file and the directory of
    # the public keys of the subscribers it admits (`sam2long-stream keys` makes both).
    "curve_secret": None,
    "curve_clients": None,
    "upstream_curve_server": None,  # public key file of CURVE-secured upstreams
}
_OFF = ("", "off", "none")


class LaunchError(ValueError):
    """A launch file or launch option is wrong; the message is one line for the user."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class StreamSpec:
    """One stream: ``node`` holds the `run` config keys (and ``prompts``), the rest is how
    the launcher runs it."""

    stream_id: str
    node: Mapping[str, Any]
    http: str | None = None
    allow_remote: bool = False
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    restart: str = "on-failure"

    @property
    def pub(self) -> str:
        return str(self.node["pub"])

    @property
    def control(self) -> str | None:
        value = str(self.node["control"])
        return None if value.lower() in _OFF else value

    @property
    def device(self) -> str:
        return str(self.node.get("device") or "cpu")


@dataclass(frozen=True)
class ProxySpec:
    bind: str
    upstreams: tuple[str, ...] = ()
    hwm: int = 1000
    curve_secret: str | None = None
    curve_clients: str | None = None
    upstream_curve_server: str | None = None


@dataclass(frozen=True)
class LaunchConfig:
    path: str
    streams: tuple[StreamSpec, ...]
    proxy: ProxySpec | None
    options: Mapping[str, Any]


def _node_keys() -> dict[str, tuple[type, Any]]:
    """The node's config vocabulary, from the CLI itself so both stay in step."""
    from sam2long_stream.cli import RUN_OPTIONS

    return dict(RUN_OPTIONS)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a DNS name: assume it reaches out


def _split_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise LaunchError(f"{what} must be HOST:PORT with a port 1..65535, got {text!r}")
    return host, int(port)


def _endpoint(address: str, what: str) -> tuple[tuple[str, str], str | None]:
    """(conflict key, tcp host or None) of a ZeroMQ address a node or proxy binds.
    Wildcard ports are refused: the launcher must know where to connect."""
    if address.startswith("tcp://"):
        with contextlib.suppress(LaunchError):
            host, port = _split_host_port(address[len("tcp://") :], what)
            return ("tcp", str(port)), host
    elif address.startswith("ipc://") and len(address) > len("ipc://") and "*" not in address:
        return ("ipc", address[len("ipc://") :]), None
    raise LaunchError(
        f"{what} must be tcp://HOST:PORT with a fixed port (the launcher connects to it) "
        f"or ipc://PATH, got {address!r}"
    )


def connect_address(bind_address: str) -> str:
    """Where a local process connects to reach ``bind_address`` (wildcards -> loopback)."""
    if bind_address.startswith("tcp://"):
        host, port = _split_host_port(bind_address[len("tcp://") :], "address")
        if host in ("*", "0.0.0.0"):
            host = "127.0.0.1"
        elif host in ("[::]", "::", "[*]"):
            host = "[::1]"
        return f"tcp://{host}:{port}"
    return bind_address


def _check_type(value: Any, kind: type, where: str, key: str) -> None:
    if kind is int and type(value) is not int:
        raise LaunchError(f"{where}: {key} must be an integer, got {value!r}")
    if kind is float and (type(value) not in (int, float) or not math.isfinite(value) or value < 0):
        raise LaunchError(f"{where}: {key} must be a number >= 0, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise LaunchError(f"{where}: {key} must be a string, got {value!r}")
    if kind is bool and type(value) is not bool:
        raise LaunchError(f"{where}: {key} must be true or false, got {value!r}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LaunchError(f"{where} must be a table")
    return {str(k).replace("-", "_"): v for k, v in value.items()}


def _unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise LaunchError(
                f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(allowed))}"
            )


def _launcher_options(raw: Any, where: str) -> dict[str, Any]:
    table = _table(raw, where)
    _unknown(table, list(LAUNCHER_DEFAULTS), where)
    opts = dict(LAUNCHER_DEFAULTS)
    for key, value in table.items():
        default = LAUNCHER_DEFAULTS[key]
        if isinstance(default, float):
            _check_type(value, float, where, key)
            value = float(value)
        elif isinstance(default, bool):
            _check_type(value, bool, where, key)
        else:
            _check_type(value, str, where, key)
        opts[key] = value
    if opts["table_interval_s"] <= 0 or opts["stop_timeout_s"] <= 0:
        raise LaunchError(f"{where}: table_interval_s and stop_timeout_s must be > 0")
    if opts["restart_max_delay_s"] < opts["restart_delay_s"]:
        raise LaunchError(f"{where}: restart_max_delay_s must be >= restart_delay_s")
    if opts["http"] is not None:
        _split_host_port(opts["http"], f"{where}: http")
    return opts


def _proxy_spec(raw: Any, where: str) -> ProxySpec:
    table = _table(raw, where)
    _unknown(table, list(PROXY_DEFAULTS), where)
    opts = {**PROXY_DEFAULTS, **table}
    if not isinstance(opts["bind"], str):
        raise LaunchError(f"{where}: bind (the address subscribers connect to) is required")
    ups = opts["upstreams"]
    if not isinstance(ups, list) or not all(isinstance(u, str) and u for u in ups):
        raise LaunchError(f"{where}: upstreams must be a list of addresses")
    if len(set(ups)) != len(ups):
        raise LaunchError(f"{where}: an upstream is listed twice")
    _check_type(opts["hwm"], int, where, "hwm")
    if opts["hwm"] < 1:
        raise LaunchError(f"{where}: hwm must be >= 1")
    for key in ("curve_secret", "curve_clients", "upstream_curve_server"):
        if opts[key] is not None:
            _check_type(opts[key], str, where, key)
    if (opts["curve_secret"] is None) != (opts["curve_clients"] is None):
        raise LaunchError(f"{where}: curve_secret and curve_clients go together")
    if opts["upstream_curve_server"] is not None and not ups:
        raise LaunchError(f"{where}: upstream_curve_server without upstreams")
    return ProxySpec(
        bind=opts["bind"],
        upstreams=tuple(ups),
        hwm=opts["hwm"],
        curve_secret=opts["curve_secret"],
        curve_clients=opts["curve_clients"],
        upstream_curve_server=opts["upstream_curve_server"],
    )


def _stream_spec(merged: dict[str, Any], where: str, node_keys: Mapping[str, Any]) -> StreamSpec:
    """Check one stream (defaults already merged in) and split node keys from the rest."""
    from sam2long_stream.cli import _config_prompts

    allowed = [*node_keys, "prompts", *STREAM_LAUNCH_KEYS]
    _unknown(merged, allowed, where)
    for key in ("source", "stream_id", "pub", "control"):
        if key not in merged:
            hint = ' (use "off" for none)' if key == "control" else ""
            raise LaunchError(f"{where}: {key} is required{hint}")
    node: dict[str, Any] = {}
    for key, value in merged.items():
        if key in node_keys and key not in STREAM_LAUNCH_KEYS:
            _check_type(value, node_keys[key][0], where, key)
            node[key] = value
    try:
        wire.check_stream_id(node["stream_id"])
    except ValueError as exc:
        raise LaunchError(f"{where}: {exc}") from None
    prompts = merged.get("prompts", [])
    if not isinstance(prompts, list) or not all(isinstance(p, dict) for p in prompts):
        raise LaunchError(f"{where}: prompts must be [[streams.prompts]] tables")
    try:
        _config_prompts(prompts, where)  # the node's own checks, so mistakes show up now
    except ValueError as exc:
        text = str(exc)
        raise LaunchError(text if text.startswith(where) else f"{where}: prompts: {text}") from None
    if prompts:
        node["prompts"] = prompts
    http = merged.get("http")
    if isinstance(http, str) and http.lower() in _OFF:
        http = None
    if http is not None:
        _check_type(http, str, where, "http")
        _split_host_port(http, f"{where}: http")
    allow_remote = merged.get("allow_remote", False)
    _check_type(allow_remote, bool, where, "allow_remote")
    args = merged.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise LaunchError(f"{where}: args must be a list of strings")
    env = merged.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise LaunchError(f"{where}: env must be a table of strings")
    restart = merged.get("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise LaunchError(f"{where}: restart must be one of {', '.join(RESTART_POLICIES)}")
    return StreamSpec(
        stream_id=node["stream_id"],
        node=node,
        http=http,
        allow_remote=allow_remote,
        args=tuple(args),
        env=dict(env),
        restart=restart,
    )


def _check_addresses(
    streams: Sequence[StreamSpec], proxy: ProxySpec | None, opts: Mapping[str, Any], path: str
) -> None:
    """Every bound port once; non-loopback binds only where allowed."""
    seen: dict[tuple[str, str], str] = {}

    def claim(address: str, owner: str, remote_ok: bool, http: bool = False) -> None:
        if http:
            host, port = _split_host_port(address, f"{path}: {owner}")
            key: tuple[str, str] = ("tcp", str(port))
        else:
            key, host = _endpoint(address, f"{path}: {owner}")
        if key in seen:
            what = "port" if key[0] == "tcp" else "ipc path"
            raise LaunchError(f"{path}: {what} {key[1]} is used twice: {seen[key]} and {owner}")
        seen[key] = owner
        if host is not None and not _is_loopback(host) and not remote_ok:
            where = "streams.allow_remote" if owner.startswith("stream") else "launcher"
            raise LaunchError(
                f"{path}: {owner} binds {host}, which is reachable from other hosts; "
                f"set allow_remote = true ([{where}]) to mean it"
            )

    if proxy is not None:
        claim(proxy.bind, "the proxy bind", opts["allow_remote"])
    if opts["http"] is not None:
        claim(opts["http"], "the launcher http", opts["allow_remote"], http=True)
    for s in streams:
        claim(s.pub, f"stream {s.stream_id} pub", s.allow_remote)
        if s.control is not None:
            claim(s.control, f"stream {s.stream_id} control", s.allow_remote)
        if s.http is not None:
            claim(s.http, f"stream {s.stream_id} http", s.allow_remote, http=True)


def parse_launch(data: Mapping[str, Any], path: str = "<launch file>") -> LaunchConfig:
    """Validate a parsed launch file strictly: unknown keys, wrong types, duplicate stream
    ids and duplicate ports are one-line LaunchErrors naming the place."""
    top = _table(dict(data), path)
    _unknown(top, ["launcher", "proxy", "defaults", "streams"], path)
    opts = _launcher_options(top.get("launcher", {}), f"{path}: [launcher]")
    proxy = _proxy_spec(top["proxy"], f"{path}: [proxy]") if "proxy" in top else None
    node_keys = _node_keys()
    defaults = _table(top.get("defaults", {}), f"{path}: [defaults]")
    _unknown(defaults, [*node_keys, "prompts", *STREAM_LAUNCH_KEYS], f"{path}: [defaults]")
    raw_streams = top.get("streams", [])
    if not isinstance(raw_streams, list) or not all(isinstance(s, dict) for s in raw_streams):
        raise LaunchError(f"{path}: streams must be [[streams]] tables")
    if not raw_streams and (proxy is None or not proxy.upstreams):
        raise LaunchError(f"{path}: no [[streams]] (and no [proxy] upstreams to forward)")
    streams: list[StreamSpec] = []
    ids: dict[str, int] = {}
    for n, raw in enumerate(raw_streams):
        table = _table(raw, f"{path}: streams[{n}]")
        label = f"streams[{n}]" + (
            f" ({table['stream_id']})" if isinstance(table.get("stream_id"), str) else ""
        )
        spec = _stream_spec({**defaults, **table}, f"{path}: {label}", node_keys)
        if spec.stream_id in ids:
            raise LaunchError(
                f"{path}: stream id {spec.stream_id!r} is used twice "
                f"(streams[{ids[spec.stream_id]}] and streams[{n}])"
            )
        ids[spec.stream_id] = n
        streams.append(spec)
    _check_addresses(streams, proxy, opts, path)
    curve_nodes = [s.stream_id for s in streams if s.node.get("curve_secret")]
    needs_key = curve_nodes or (proxy is not None and proxy.upstream_curve_server)
    if needs_key and opts["curve_secret"] is None:
        what = f"stream {curve_nodes[0]} runs" if curve_nodes else "the upstreams run"
        raise LaunchError(
            f"{path}: {what} with CurveZMQ, so the launcher needs its own key to read it: "
            "set curve_secret in [launcher] (and put its public key in curve_clients)"
        )
    if proxy is not None:
        local = {connect_address(s.pub) for s in streams}
        for up in proxy.upstreams:
            if up in local:
                raise LaunchError(f"{path}: [proxy] upstream {up} is a stream's own pub")
    return LaunchConfig(path=path, streams=tuple(streams), proxy=proxy, options=opts)


def load_launch_file(path: str | os.PathLike[str]) -> LaunchConfig:
    """Read and validate a launch file (LaunchError on any mistake)."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise LaunchError(f"launch file not found: {name}") from None
    except IsADirectoryError:
        raise LaunchError(f"launch file is a directory: {name}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LaunchError(f"{name}: not valid TOML ({exc})") from None
    return parse_launch(data, name)


# --------------------------------------------------------------------------- node files


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to a node config")
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to a node config")


def node_toml(spec: StreamSpec, origin: str = "") -> str:
    """The stream's node config as TOML that `run --config` reads (checked by reading it
    back, so a writer bug cannot hand a node a different config)."""
    lines = [f"# written by {PROG}" + (f" from {origin}" if origin else "") + "; do not edit"]
    for key, value in spec.node.items():
        if key != "prompts":
            lines.append(f"{key} = {_toml_value(value)}")
    for prompt in spec.node.get("prompts", []):
        lines += ["", "[[prompts]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in prompt.items()]
    text = "\n".join(lines) + "\n"
    if tomllib.loads(text) != dict(spec.node):
        raise AssertionError(f"node config for {spec.stream_id} did not round-trip")
    return text


# PR_SET_PDEATHSIG (1) survives exec: the node gets SIGTERM when the launcher thread that
# spawned it dies, even by SIGKILL. The ppid check closes the race where it died first.
_EXEC_STUB = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(70)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def node_argv(spec: StreamSpec, config_path: str) -> list[str]:
    """The `sam2long-stream run` command line of one stream."""
    argv = [sys.executable, "-m", "sam2long_stream.cli", "run", "--config", config_path]
    if spec.http is not None:
        argv += ["--http", spec.http]
    if spec.allow_remote:
        argv.append("--allow-remote")
    return argv + list(spec.args)


def _redact(url: str) -> str:
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


# --------------------------------------------------------------------------- proxy


def load_secret_key(path: str, what: str) -> tuple[bytes, bytes]:
    """(public, secret) from a ``zmq.auth`` secret key file (``NAME.key_secret``)."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise OSError(f"{what}: cannot read CURVE key {path}: {exc}") from None
    if not secret:
        raise OSError(f"{what}: {path} holds no secret key (it is NAME.key_secret)")
    return public, secret


def load_public_key(path: str, what: str) -> bytes:
    """The public key from a ``zmq.auth`` key file (``NAME.key`` or ``NAME.key_secret``)."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise OSError(f"{what}: cannot read CURVE key {path}: {exc}") from None
    return public


@dataclass(frozen=True)
class Upstream:
    """A PUB/XPUB to read from; ``server_public`` set: it is a CURVE server."""

    address: str
    server_public: bytes | None = None


def connect_upstreams(
    sock: zmq.Socket, upstreams: Sequence[Upstream], client: tuple[bytes, bytes] | None
) -> None:
    """Connect ``sock`` to each upstream. libzmq takes the security options as they are
    at connect time, so plain upstreams are connected first, then each CURVE one with
    its server key."""
    for up in sorted(upstreams, key=lambda u: u.server_public is not None):
        if up.server_public is not None:
            if client is None:
                raise ValueError(f"{up.address} is a CURVE server: a client key is needed")
            sock.curve_publickey, sock.curve_secretkey = client
            sock.curve_serverkey = up.server_public
        sock.connect(up.address)


class Proxy:
    """XSUB (connects to every upstream PUB) -> XPUB (binds the one public address), run
    by `zmq.proxy_steerable` on a thread of its own, stopped over a PAIR socket.

    ``curve_secret`` (a secret key file) makes the public side a CURVE server, as on a
    node; ``curve_clients`` (a directory of public key files) then admits only those
    subscribers (without it: any subscriber that knows the server key). ``client_keys``
    is the (public, secret) pair used towards upstreams that are CURVE servers.
    """

    def __init__(
        self,
        bind: str,
        upstreams: Sequence[Upstream | str] = (),
        *,
        hwm: int = 1000,
        curve_secret: str | None = None,
        curve_clients: str | None = None,
        client_keys: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.bind = bind
        self.upstreams = [u if isinstance(u, Upstream) else Upstream(u) for u in upstreams]
        self.hwm = hwm
        self.curve_clients = curve_clients
        self.client_keys = client_keys
        self.endpoint: str | None = None
        self._server_keys = load_secret_key(curve_secret, "proxy") if curve_secret else None
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
        """Bind and start forwarding; OSError when the public address cannot be bound."""
        if self._server_keys is not None:
            if not zmq.has("curve"):
                raise OSError("proxy: this libzmq has no CURVE support")
            if self.curve_clients is not None:
                if not os.path.isdir(self.curve_clients):
                    raise OSError(f"proxy: curve_clients is not a directory: {self.curve_clients}")
                from zmq.auth.thread import ThreadAuthenticator

                self._auth = ThreadAuthenticator(self._ctx, log=log)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=self.curve_clients)
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
                    xpub.curve_server = True
                    xpub.curve_publickey, xpub.curve_secretkey = self._server_keys
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


# --------------------------------------------------------------------------- children


class _Child:
    """One stream's node process across restarts, and what its status said last."""

    def __init__(self, spec: StreamSpec | None, stream_id: str) -> None:
        self.spec = spec  # None: a stream seen only on an upstream (another machine)
        self.stream_id = stream_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every pid this stream had, for the caller's checks
        self.restarts = 0
        self.failures = 0  # consecutive quick failures, drives the backoff
        self.started_t: float | None = None
        self.next_start_t: float | None = 0.0  # when to (re)start; None: not again
        self.exit_code: int | None = None
        self.status: dict[str, Any] = {}
        self.status_t: float | None = None  # monotonic time of the last status message
        self.seen = False  # a status came from this stream at least once
        self.stopped = False  # the launcher stopped it (shutdown), not a crash
        self.reader: threading.Thread | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=20)

    @property
    def local(self) -> bool:
        return self.spec is not None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self, now: float) -> str:
        if not self.local:
            return str(self.status.get("state", "?"))
        if self.running:
            return str(self.status.get("state", "starting")) if self.status_t else "starting"
        if self.next_start_t is not None:
            if self.started_t is None:
                return "starting"
            return f"backoff {max(0.0, self.next_start_t - now):.0f}s"
        if self.exit_code is None or self.stopped:
            return "stopped"
        return "exited" if self.exit_code == 0 else f"failed ({self.exit_code})"

    def row(self, now: float) -> dict[str, Any]:
        st = self.status
        return {
            "stream_id": self.stream_id,
            "local": self.local,
            "state": self.state(now),
            "pid": self.proc.pid if self.running and self.proc else None,
            "device": self.spec.device if self.spec else None,
            "restarts": self.restarts if self.local else None,
            "fps": st.get("fps"),
            "latency_ms": st.get("latency_ms"),
            "dropped_frames": st.get("dropped_frames"),
            "status_age_s": None if self.status_t is None else round(now - self.status_t, 1),
            "last_log": self.tail[-1] if self.tail else None,
            "error": st.get("error"),
        }


def _fmt(value: Any, spec: str = "", unit: str = "") -> str:
    if value is None:
        return "-"
    return (format(value, spec) if spec else str(value)) + unit


def format_table(rows: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """The live table: one line per stream, plain text."""
    cols = ("STREAM", "STATE", "FPS", "LATENCY", "DROPPED", "RESTARTS", "PID", "DEVICE")
    body = [
        (
            r["stream_id"],
            r["state"],
            _fmt(r["fps"], ".1f"),
            _fmt(r["latency_ms"], ".0f", " ms"),
            _fmt(r["dropped_frames"]),
            _fmt(r["restarts"]),
            _fmt(r["pid"]),
            _fmt(r["device"]),
        )
        for r in rows
    ]
    widths = [max(len(c), *(len(line[i]) for line in body)) for i, c in enumerate(cols)]
    out = [header] if header else []
    for line in (cols, *body):
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out)


# --------------------------------------------------------------------------- launcher


class _RecentHandler(logging.Handler):
    """The launcher's own log lines, kept for the terminal table's tail."""

    def __init__(self, sink: collections.deque[str]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"[launch] {record.getMessage()}")


class Launcher:
    """Runs the nodes of one launch file; see the module docstring."""

    def __init__(
        self,
        config: LaunchConfig,
        *,
        table: bool = True,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        http: str | None = None,
    ) -> None:
        self.config = config
        self.opts = dict(config.options)
        if http is not None:
            host, _ = _split_host_port(http, "--http")
            if not _is_loopback(host) and not self.opts["allow_remote"]:
                raise LaunchError(
                    f"--http {http} is reachable from other hosts; set allow_remote = true "
                    "in [launcher] to mean it"
                )
            self.opts["http"] = http
        self.table = table
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.children: dict[str, _Child] = {
            s.stream_id: _Child(s, s.stream_id) for s in config.streams
        }
        self.proxy: Proxy | None = None
        self.http_server: ThreadingHTTPServer | None = None
        self.http_endpoint: str | None = None
        self._signals = 0
        self._lock = threading.Lock()  # guards what the HTTP thread reads
        self._write_lock = threading.Lock()
        self._tick_t = time.monotonic()
        self._ctx = zmq.Context()
        self._sub: zmq.Socket | None = None
        self._run_dir: Path | None = None
        self._own_run_dir = False
        self._tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._echo_logs = not (table and self._tty)
        self._recent: collections.deque[str] = collections.deque(maxlen=6)
        self._log_handler: logging.Handler | None = None

    # -- signals ------------------------------------------------------------------------

    def request_stop(self, signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        """First call: stop every node gracefully; a second one kills them at once."""
        self._signals += 1

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    # -- running ------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until a signal (exit 0) or until every node is done for good (0 when
        all exited 0, else 1). Always stops every node and reaps it."""
        try:
            self._setup()
            self._loop()
        finally:
            self._shutdown()
        failed = [c for c in self.children.values() if c.local and c.exit_code not in (0, None)]
        if self._signals:
            return 0
        return 1 if failed else 0

    def _setup(self) -> None:
        if not self._echo_logs:  # the terminal table redraws: keep its own lines in view
            self._log_handler = _RecentHandler(self._recent)
            log.addHandler(self._log_handler)
        run_dir = self.opts["run_dir"]
        if run_dir:
            self._run_dir = Path(run_dir)
            self._run_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._run_dir = Path(tempfile.mkdtemp(prefix="sam2long-launch-"))
            self._own_run_dir = True
        if self.opts["log_dir"]:
            Path(self.opts["log_dir"]).mkdir(parents=True, exist_ok=True)
        for spec in self.config.streams:
            path = self._run_dir / f"{spec.stream_id}.toml"
            # 0600: a source URL may carry a camera's password.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(node_toml(spec, self.config.path))
        client = None
        if self.opts["curve_secret"]:
            client = load_secret_key(self.opts["curve_secret"], "[launcher] curve_secret")
        nodes = [
            Upstream(
                connect_address(s.pub),
                load_public_key(s.node["curve_secret"], f"stream {s.stream_id}")
                if s.node.get("curve_secret")
                else None,
            )
            for s in self.config.streams
        ]
        proxy = self.config.proxy
        remote: list[Upstream] = []
        if proxy is not None:
            server = None
            if proxy.upstream_curve_server:
                server = load_public_key(proxy.upstream_curve_server, "upstream_curve_server")
            remote = [Upstream(address, server) for address in proxy.upstreams]
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"status/")
        self._sub = sub
        connect_upstreams(sub, nodes + remote, client)
        if proxy is not None:
            self.proxy = Proxy(
                proxy.bind,
                nodes + remote,
                hwm=proxy.hwm,
                curve_secret=proxy.curve_secret,
                curve_clients=proxy.curve_clients,
                client_keys=client,
            )
            endpoint = self.proxy.start()
            log.info("proxy: subscribers connect to %s", endpoint)
        if self.opts["http"]:
            self._start_http(self.opts["http"])

    def _loop(self) -> None:
        next_table = time.monotonic()
        poller = zmq.Poller()
        assert self._sub is not None
        poller.register(self._sub, zmq.POLLIN)
        while not self._signals:
            now = time.monotonic()
            self._tick_t = now
            for child in list(self.children.values()):
                if child.local:
                    self._supervise(child, now)
            if self.table and now >= next_table:
                self._print_table(now)
                next_table = now + self.opts["table_interval_s"]
            if self._all_done():
                log.info("every node is done")
                return
            if poller.poll(100):
                self._drain_status()

    def _all_done(self) -> bool:
        local = [c for c in self.children.values() if c.local]
        if not local:
            return False  # a fan-in proxy runs until stopped
        return all(not c.running and c.next_start_t is None for c in local)

    def _supervise(self, child: _Child, now: float) -> None:
        proc = child.proc
        if proc is not None and proc.poll() is not None:
            self._exited(child, proc.returncode, now)
        if child.proc is None and child.next_start_t is not None and now >= child.next_start_t:
            self._spawn(child, now)
        elif child.running and self.opts["hang_timeout_s"] > 0 and child.status_t is not None:
            silent = now - child.status_t
            if silent > self.opts["hang_timeout_s"]:
                log.warning(
                    "%s: no status for %.0f s; killing the hung node", child.stream_id, silent
                )
                assert child.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()

    def _spawn(self, child: _Child, now: float) -> None:
        spec = child.spec
        assert spec is not None and self._run_dir is not None
        argv = node_argv(spec, str(self._run_dir / f"{spec.stream_id}.toml"))
        if sys.platform == "linux":
            argv = [sys.executable, "-c", _EXEC_STUB, str(os.getpid()), *argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a terminal's Ctrl-C goes to the launcher only
            )
        except OSError as exc:
            log.error("%s: cannot start the node: %s", spec.stream_id, exc)
            child.exit_code = 127
            self._schedule_restart(child, now)
            return
        with self._lock:
            if child.started_t is not None:
                child.restarts += 1
            child.proc, child.started_t, child.exit_code = proc, now, None
            child.pids.append(proc.pid)
            child.status, child.status_t = {}, None
        log.info(
            "%s: started node pid %d%s",
            spec.stream_id,
            proc.pid,
            f" (restart {child.restarts})" if child.restarts else "",
        )
        child.reader = threading.Thread(
            target=self._pump_log, args=(child, proc), name=f"log-{spec.stream_id}", daemon=True
        )
        child.reader.start()

    def _exited(self, child: _Child, code: int, now: float) -> None:
        spec = child.spec
        assert spec is not None
        up = now - (child.started_t or now)
        with self._lock:
            child.proc, child.exit_code = None, code
        if child.reader is not None:
            child.reader.join(2.0)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        last = child.tail[-1] if child.tail else ""
        failed = code != 0
        if spec.restart == "never" or (spec.restart == "on-failure" and not failed):
            log.log(logging.WARNING if failed else logging.INFO,
                    "%s: node exited (%s) after %.0f s; not restarting%s",
                    spec.stream_id, how, up, f": {last}" if failed and last else "")  # fmt: skip
            child.next_start_t = None
            return
        if up >= self.opts["restart_reset_after_s"]:
            child.failures = 0
        delay = self._schedule_restart(child, now)
        log.warning(
            "%s: node exited (%s) after %.0f s; restarting in %.1f s%s",
            spec.stream_id, how, up, delay, f" (last output: {last})" if last else "",
        )  # fmt: skip

    def _schedule_restart(self, child: _Child, now: float) -> float:
        """Capped exponential backoff over consecutive failures."""
        child.failures += 1
        base, cap = self.opts["restart_delay_s"], self.opts["restart_max_delay_s"]
        delay = min(cap, base * 2 ** max(0, child.failures - 1))
        child.next_start_t = now + delay
        return delay

    def _pump_log(self, child: _Child, proc: subprocess.Popen[bytes]) -> None:
        """Copy a node's output: prefixed to stderr (or its log file), last lines kept."""
        assert proc.stdout is not None
        sink: IO[str] | None = None
        if self.opts["log_dir"]:
            path = Path(self.opts["log_dir"]) / f"{child.stream_id}.log"
            sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                child.tail.append(line)
                self._recent.append(f"[{child.stream_id}] {line}")
                if sink is not None:
                    sink.write(line + "\n")
                    sink.flush()
                elif self._echo_logs:
                    with self._write_lock:
                        self.err.write(f"[{child.stream_id}] {line}\n")
                        self.err.flush()
        except (OSError, ValueError):
            pass
        finally:
            proc.stdout.close()
            if sink is not None:
                sink.close()

    def _drain_status(self) -> None:
        assert self._sub is not None
        while True:
            try:
                parts = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = wire.decode(parts)
            except wire.WireFormatError as exc:
                log.debug("ignoring a malformed status message: %s", exc)
                continue
            if not hasattr(msg, "state"):
                continue
            now = time.monotonic()
            with self._lock:
                child = self.children.get(msg.stream_id)
                if child is None:  # a stream of an upstream proxy
                    child = self.children[msg.stream_id] = _Child(None, msg.stream_id)
                if child.local and not child.running:
                    continue  # the last words of a node already reaped
                merged = dict(child.status)
                merged.update({k: v for k, v in msg.header.items() if v is not None})
                if msg.state not in ("error", "unhealthy"):
                    merged.pop("error", None)
                child.status, child.status_t, child.seen = merged, now, True

    # -- output -------------------------------------------------------------------------

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.monotonic() if now is None else now
        with self._lock:
            children = list(self.children.values())
            return [c.row(now) for c in children]

    def _print_table(self, now: float) -> None:
        where = self.proxy.endpoint if self.proxy is not None else "each stream's pub"
        header = (
            f"{PROG} {self.config.path}: {len(self.config.streams)} streams, "
            f"subscribers connect to {where}  [{time.strftime('%H:%M:%S')}]"
        )
        text = format_table(self.rows(now), header)
        if self._tty:
            tail = "\n".join(self._recent)
            text = "\x1b[H\x1b[2J" + text + ("\n\n" + tail if tail else "")
        with self._write_lock:
            self.out.write(text + "\n\n")
            self.out.flush()

    def health(self) -> tuple[bool, bool, dict[str, Any]]:
        """(alive, ready, body). Alive: the supervisor loop ticks and the proxy forwards
        (a camera that is down is not a reason to restart the pod: the launcher restarts
        its node). Ready: every local node has reported status once (its model is
        loaded), which is what a rollout should wait for."""
        now = time.monotonic()
        loop_ok = now - self._tick_t < 10.0
        proxy_ok = self.proxy is None or self.proxy.alive
        with self._lock:
            local = [c for c in self.children.values() if c.local]
            ready = loop_ok and proxy_ok and all(c.seen for c in local)
        body = {
            "ok": loop_ok and proxy_ok,
            "ready": ready,
            "proxy": None if self.proxy is None else self.proxy.endpoint,
            "streams": self.rows(now),
        }
        return loop_ok and proxy_ok, ready, body

    def metrics(self) -> str:
        """Prometheus text format, one series per stream."""
        alive, ready, _ = self.health()
        lines = [
            "# HELP sam2long_launch_up 1 while the launcher and its proxy work",
            "# TYPE sam2long_launch_up gauge",
            f"sam2long_launch_up {int(alive)}",
            "# HELP sam2long_launch_ready 1 once every local node has reported status",
            "# TYPE sam2long_launch_ready gauge",
            f"sam2long_launch_ready {int(ready)}",
        ]
        series = {
            "running": ("gauge", "1 while the stream's node reports state running", None),
            "fps": ("gauge", "frames per second the node tracks", "fps"),
            "latency_ms": ("gauge", "node capture-to-publish latency, ms", "latency_ms"),
            "dropped_frames": ("gauge", "frames the node dropped", "dropped_frames"),
            "restarts_total": ("counter", "node restarts by the launcher", "restarts"),
        }
        rows = self.rows()
        for name, (kind, help_text, key) in series.items():
            lines += [
                f"# HELP sam2long_launch_stream_{name} {help_text}",
                f"# TYPE sam2long_launch_stream_{name} {kind}",
            ]
            for r in rows:
                value = int(r["state"] == "running") if key is None else r[key]
                if value is not None:
                    lines.append(
                        f'sam2long_launch_stream_{name}{{stream="{r["stream_id"]}"}} {value}'
                    )
        return "\n".join(lines) + "\n"

    def _start_http(self, address: str) -> None:
        host, port = _split_host_port(address, "http")
        launcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                alive, ready, body = launcher.health()
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, launcher.metrics(), "text/plain; version=0.0.4")
                elif path in ("/healthz", "/"):
                    self._send(200 if alive else 503, json.dumps(body), "application/json")
                elif path == "/readyz":
                    self._send(200 if ready else 503, json.dumps(body), "application/json")
                else:
                    self._send(404, '{"error": "not found"}', "application/json")

            def _send(self, code: int, text: str, kind: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        try:
            server = ThreadingHTTPServer((host.strip("[]"), port), Handler)
        except OSError as exc:
            raise OSError(f"cannot serve http on {address}: {exc.strerror or exc}") from None
        server.daemon_threads = True
        self.http_server = server
        self.http_endpoint = f"{host}:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, name="launch-http", daemon=True).start()
        log.info("http: /healthz /readyz /metrics on %s", self.http_endpoint)

    # -- shutdown -----------------------------------------------------------------------

    def _shutdown(self) -> None:
        live = [c for c in self.children.values() if c.running]
        for child in live:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.terminate()
        deadline = time.monotonic() + self.opts["stop_timeout_s"]
        killed = self._signals >= 2
        while any(c.running for c in live):
            if not killed and (time.monotonic() >= deadline or self._signals >= 2):
                for child in live:
                    if child.running:
                        log.warning("%s: still running; killing it", child.stream_id)
                        assert child.proc is not None
                        with contextlib.suppress(ProcessLookupError):
                            child.proc.kill()
                killed = True
            time.sleep(0.05)
        for child in live:
            assert child.proc is not None
            code = child.proc.wait()
            if child.reader is not None:
                child.reader.join(2.0)
            with self._lock:
                child.exit_code, child.proc = code, None
                child.next_start_t, child.stopped = None, True
            log.info("%s: node stopped (exit %s)", child.stream_id, code)
        for child in self.children.values():
            child.next_start_t = None
        if self.table:
            self._print_table(time.monotonic())
        if self.http_server is not None:
            self.http_server.shutdown()
            self.http_server.server_close()
        if self._sub is not None:
            self._sub.close(linger=0)
        if self.proxy is not None:
            self.proxy.stop()
        self._ctx.term()
        if self._own_run_dir and self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)


# --------------------------------------------------------------------------- CLI


def _check_report(config: LaunchConfig) -> str:
    n = len(config.streams)
    lines = [f"{config.path}: {n} stream{'' if n == 1 else 's'} OK"]
    if config.proxy is not None:
        ups = f" (+ {len(config.proxy.upstreams)} upstreams)" if config.proxy.upstreams else ""
        lines.append(f"proxy: subscribers connect to {config.proxy.bind}{ups}")
    for s in config.streams:
        lines.append(
            f"{s.stream_id}: {_redact(str(s.node['source']))} on {s.device}, pub {s.pub}, "
            f"control {s.control or 'off'}" + (f", http {s.http}" if s.http else "")
        )
    return "\n".join(lines)


def add_parser(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add the `launch` subcommand to the sam2long-stream CLI (or any subparsers)."""
    p = subparsers.add_parser(
        "launch",
        parents=list(parents),
        help="run one node per stream of a launch file, restart them, proxy their output",
        description="Run one `sam2long-stream run` process per [[streams]] table of a "
        "launch TOML file (see launch/*.toml and docs/deploy.md).",
    )
    p.add_argument("launch_file", metavar="LAUNCH.toml", help="the launch file")
    p.add_argument(
        "--no-table", dest="table", action="store_false", help="log lines only, no live table"
    )
    p.add_argument(
        "--http", metavar="HOST:PORT", help="serve /healthz, /readyz, /metrics (overrides the file)"
    )
    p.add_argument(
        "--check", action="store_true", help="validate the launch file, print the plan, exit"
    )
    p.set_defaults(func=cmd_launch)
    return p


def cmd_launch(args: argparse.Namespace) -> int:
    """Validate, then supervise until SIGTERM/SIGINT (or until every node is done)."""
    config = load_launch_file(args.launch_file)
    if args.check:
        print(_check_report(config), flush=True)
        return 0
    launcher = Launcher(config, table=args.table, http=args.http)
    launcher.install_signal_handlers()
    return launcher.run()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sam2long_stream.launch site.toml`: the same as `sam2long-stream launch`."""
    parser = argparse.ArgumentParser(prog="sam2long-stream")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    common.add_argument("--log-level", default="INFO", help="logging level (INFO)")
    sub = parser.add_subparsers(dest="command")
    launch_parser = add_parser(sub, [common])
    args = launch_parser.parse_args(argv)
    level = "DEBUG" if args.debug else str(args.log_level).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="sam2long-stream: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"sam2long-stream: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
