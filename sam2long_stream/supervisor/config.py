"""The launch file: shards of streams, the proxy, and how the launcher behaves.

A shard is one ``sam2long-stream run`` process: one model on one device, serving many
cameras. Its table holds what the node file's top level holds (model, node and stream
default options of `settings`, plus ``[[prompts]]`` and ``[[zones]]``), its
``[[shards.streams]]`` what the node file's ``[[streams]]`` hold, and a few keys that
say how to run the process (`SHARD_LAUNCH_KEYS`). Every option is checked here by
`settings`, the node's own reader, so a mistake is reported before anything starts.

The older format, top-level ``[[streams]]`` tables that each carry their own ``pub`` and
``control``, still reads: each such stream is a shard of one (one process per camera).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sam2long_stream import security, settings
from sam2long_stream.events import read_zones
from sam2long_stream.limits import quote, shown
from sam2long_stream.redact import redact_url
from sam2long_stream.transport import wire
from sam2long_stream.usage import UsageError

RESTART_POLICIES = ("on-failure", "always", "never")
# Keys of a shard table that are not node options: they tell the launcher how to run it.
SHARD_LAUNCH_KEYS: dict[str, str] = {
    "shard_id": "name of the shard in the table, logs and metrics (default shard0, ...)",
    "command": "the program that runs `run`, a list of strings "
    "(default: this Python, -m sam2long_stream.cli)",
    "args": "more `run` flags, a list of strings",
    "env": "environment variables for this process, a table of strings",
    "restart": "on-failure (default), always or never",
}
STREAM_KEYS = ("stream_id", "source", "prompts", "zones")
LAUNCHER_DEFAULTS: dict[str, Any] = {
    "restart_delay_s": 1.0,  # first restart waits this long, then doubles
    "restart_max_delay_s": 30.0,  # ... up to this
    "restart_reset_after_s": 60.0,  # a shard up this long starts the backoff afresh
    "stop_timeout_s": 10.0,  # SIGTERM -> SIGKILL
    "hang_timeout_s": 60.0,  # no status from any stream for this long: kill, restart (0: never)
    "table_interval_s": 1.0,
    "http": None,  # HOST:PORT for the launcher's /healthz, /readyz, /metrics
    "allow_remote": False,  # let proxy/http bind non-loopback addresses
    "run_dir": None,  # where the per-shard node TOML files go (default: a temp dir)
    "log_dir": None,  # per-shard log files instead of prefixed lines on stderr
    # The launcher's own CURVE secret key file: it connects with it to shards that run
    # with curve_secret (its NAME.key must be in their curve_clients) and to CURVE upstreams.
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
_SHARD_SCOPES: tuple[settings.Scope, ...] = ("model", "node", "stream")
_PROCESS_KEYS = {o.key for o in settings.options("model", "node")}


class LaunchError(UsageError):
    """A launch file or launch option is wrong; the message is one line for the user
    (exit status 2, as every usage mistake)."""


@dataclass(frozen=True)
class StreamSpec:
    """One camera of a shard: its own stream options (the shard's are its defaults)
    and its own prompts and zones, as written (``None``: the shard's)."""

    stream_id: str
    shard_id: str
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)
    prompts: tuple[Mapping[str, Any], ...] | None = None
    zones: tuple[Mapping[str, Any], ...] | None = None

    @property
    def shown_source(self) -> str:
        """The source as people may see it (password and tokens masked)."""
        return redact_url(self.source)


@dataclass(frozen=True)
class ShardSpec:
    """One node process. ``values`` are its checked options (model, node and stream
    defaults), ``prompts`` and ``zones`` its ``[[prompts]]`` and ``[[zones]]`` as
    written (``zones``: for its streams without their own; ``None``: none)."""

    shard_id: str
    values: Mapping[str, Any]
    streams: tuple[StreamSpec, ...]
    prompts: tuple[Mapping[str, Any], ...] = ()
    zones: tuple[Mapping[str, Any], ...] | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    restart: str = "on-failure"

    def option(self, key: str) -> Any:
        return self.values.get(key, settings.DEFAULTS[key])

    @property
    def pub(self) -> str:
        return str(self.option("pub"))

    @property
    def control(self) -> str | None:
        return self.option("control")

    @property
    def http(self) -> str | None:
        return self.option("http")

    @property
    def allow_remote(self) -> bool:
        return bool(self.option("allow_remote"))

    @property
    def device(self) -> str:
        return str(self.option("device"))

    @property
    def curve_secret(self) -> str | None:
        return self.option("curve_secret")

    @property
    def stream_ids(self) -> tuple[str, ...]:
        return tuple(s.stream_id for s in self.streams)


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
    shards: tuple[ShardSpec, ...]
    proxy: ProxySpec | None
    options: Mapping[str, Any]

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        return tuple(s for shard in self.shards for s in shard.streams)

    def shard(self, shard_id: str) -> ShardSpec:
        for s in self.shards:
            if s.shard_id == shard_id:
                return s
        raise KeyError(shard_id)


# --------------------------------------------------------------------------- checks


def _kind(value: Any, kind: type, where: str, key: str) -> None:
    ok = {
        int: type(value) is int,
        float: type(value) in (int, float) and value == value and abs(value) != float("inf"),
        str: isinstance(value, str),
        bool: type(value) is bool,
    }[kind]
    if not ok:
        what = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise LaunchError(f"{where}: {key} must be {what[kind]}, got {quote(value)}")
    if kind is float and value < 0:
        raise LaunchError(f"{where}: {key} must be >= 0, got {quote(value)}")


def _name(name: str) -> str:
    """A shard or stream id as a place in an error: as written when it is a valid id,
    else quoted shortened (it may be long, or hold a line break)."""
    try:
        return wire.check_stream_id(name)
    except ValueError:
        return quote(name, 40)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LaunchError(f"{where} must be a table")
    return {str(k).replace("-", "_"): v for k, v in value.items()}


def _unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise LaunchError(
                f"{where}: unknown key {quote(key)}; expected one of {', '.join(sorted(allowed))}"
            )


def _tables(value: Any, where: str, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise LaunchError(f"{where}: {what} must be [[{what}]] tables")
    return value


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise LaunchError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _launcher_options(raw: Any, where: str) -> dict[str, Any]:
    table = _table(raw, where)
    _unknown(table, list(LAUNCHER_DEFAULTS), where)
    opts = dict(LAUNCHER_DEFAULTS)
    for key, value in table.items():
        default = LAUNCHER_DEFAULTS[key]
        if isinstance(default, bool):
            _kind(value, bool, where, key)
        elif isinstance(default, float):
            _kind(value, float, where, key)
            value = float(value)
        else:
            _kind(value, str, where, key)
        opts[key] = value
    if opts["table_interval_s"] <= 0 or opts["stop_timeout_s"] <= 0:
        raise LaunchError(f"{where}: table_interval_s and stop_timeout_s must be > 0")
    if opts["restart_max_delay_s"] < opts["restart_delay_s"]:
        raise LaunchError(f"{where}: restart_max_delay_s must be >= restart_delay_s")
    if opts["http"] is not None:
        try:
            security.http_endpoint(opts["http"])
        except ValueError as exc:
            raise LaunchError(f"{where}: http: {exc}") from None
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
    _kind(opts["hwm"], int, where, "hwm")
    if opts["hwm"] < 1:
        raise LaunchError(f"{where}: hwm must be >= 1")
    for key in ("curve_secret", "curve_clients", "upstream_curve_server"):
        if opts[key] is not None:
            _kind(opts[key], str, where, key)
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


def _prompts(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    """``[[prompts]]`` tables as written, after the node's own checks."""
    try:
        settings.read_prompts(value, where)
    except ValueError as exc:
        text = str(exc)
        raise LaunchError(text if text.startswith(where) else f"{where}: {text}") from None
    return tuple(dict(p) for p in value)


def _zones(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    """``[[zones]]`` tables as written, after the node's own checks."""
    try:
        read_zones(value, where)
    except ValueError as exc:
        text = str(exc)
        raise LaunchError(text if text.startswith(where) else f"{where}: {text}") from None
    return tuple(dict(z) for z in value)


def _read(table: Mapping[str, Any], where: str, *scopes: settings.Scope) -> dict[str, Any]:
    try:
        return settings.read_table(table, where, *scopes)
    except ValueError as exc:
        text = str(exc)
        raise LaunchError(text if text.startswith(where) else f"{where}: {text}") from None


def _stream_spec(raw: Any, shard_id: str, where: str) -> StreamSpec:
    table = _table(raw, where)
    for key in table:
        if key in _PROCESS_KEYS or key in SHARD_LAUNCH_KEYS:
            raise LaunchError(
                f"{where}: {key} belongs to the shard (one process serves all its streams): "
                "move it to the [[shards]] table"
            )
    for key in ("stream_id", "source"):
        if key not in table:
            raise LaunchError(f"{where}: {key} is required")
    source = table.pop("source")
    if not isinstance(source, str) or not source.strip():
        raise LaunchError(f"{where}: source must be a URL or path, got {quote(source)}")
    prompts = _prompts(table.pop("prompts"), where) if "prompts" in table else None
    zones = _zones(table.pop("zones"), where) if "zones" in table else None
    values = _read(table, where, "stream")
    stream_id = values.pop("stream_id")
    return StreamSpec(stream_id, shard_id, source, values, prompts, zones)


def _shard_spec(merged: dict[str, Any], n: int, where: str, legacy: bool = False) -> ShardSpec:
    """Check one shard ([defaults] already merged in) and split its keys. ``legacy``: an
    old-style stream table (a shard of one), named ``where`` itself."""
    table = dict(merged)
    shard_id = table.pop("shard_id", f"shard{n}")
    try:
        wire.check_stream_id(shard_id)
    except (ValueError, TypeError) as exc:
        raise LaunchError(f"{where}: shard_id: {exc}") from None
    for key in ("stream_id", "source"):
        if key in table:
            raise LaunchError(
                f"{where}: {key} belongs to a stream: put it in a [[shards.streams]] table"
            )
    for key in ("pub", "control"):
        if key not in table:
            hint = ' (use "off" for none)' if key == "control" else ""
            raise LaunchError(f"{where}: {key} is required{hint}")
    command = table.pop("command", None)
    if command is not None:
        command = _strings(command, where, "command")
        if not command:
            raise LaunchError(f"{where}: command must not be empty")
    args = _strings(table.pop("args", []), where, "args")
    env = table.pop("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise LaunchError(f"{where}: env must be a table of strings")
    restart = table.pop("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise LaunchError(f"{where}: restart must be one of {', '.join(RESTART_POLICIES)}")
    prompts = _prompts(table.pop("prompts"), where) if "prompts" in table else ()
    zones = _zones(table.pop("zones"), where) if "zones" in table else None
    raw_streams = _tables(table.pop("streams", []), where, "shards.streams")
    if not raw_streams:
        raise LaunchError(f"{where}: no [[shards.streams]]: a shard serves at least one stream")
    _unknown(table, _shard_keys(), where)
    values = _read(table, where, *_SHARD_SCOPES)
    streams = []
    for i, raw in enumerate(raw_streams):
        sid = raw.get("stream_id") if isinstance(raw, dict) else None
        label = f"{where} streams[{i}]" + (f" ({_name(sid)})" if isinstance(sid, str) else "")
        streams.append(_stream_spec(raw, shard_id, where if legacy else label))
    shard = ShardSpec(
        shard_id=shard_id,
        values=values,
        streams=tuple(streams),
        prompts=prompts,
        zones=zones,
        command=command,
        args=args,
        env=dict(env),
        restart=restart,
    )
    _check_as_node(shard, where)
    return shard


def _check_as_node(shard: ShardSpec, where: str) -> None:
    """Build the node's own NodeConfig from the shard, so what the node would refuse
    (duplicate ids, half a CURVE or TLS pair, more prompts than max_objects) is refused
    now, in the launcher's words."""
    top = settings.read_prompts(list(shard.prompts), where)
    values = dict(shard.values)
    if shard.zones is not None:
        values["zones"] = read_zones(list(shard.zones), where)
    streams = []
    for s in shard.streams:
        own = dict(s.values)
        if s.zones is not None:
            own["zones"] = read_zones(list(s.zones), where)
        prompts = top if s.prompts is None else settings.read_prompts(list(s.prompts), where)
        streams.append((s.stream_id, s.source, own, prompts))
    try:
        settings.node_config(values, streams)
    except ValueError as exc:
        raise LaunchError(f"{where}: {exc}") from None


def _shard_keys() -> list[str]:
    """What a shard table (or [defaults]) may hold."""
    keys = [o.key for o in settings.options(*_SHARD_SCOPES) if o.key != "stream_id"]
    return [*keys, *SHARD_LAUNCH_KEYS, "prompts", "zones", "streams"]


def _legacy_shard(table: dict[str, Any]) -> dict[str, Any]:
    """An old-style ``[[streams]]`` table (its own pub and control): a shard of one."""
    stream = {k: table.pop(k) for k in STREAM_KEYS if k in table}
    shard = dict(table)
    if isinstance(stream.get("stream_id"), str):
        shard.setdefault("shard_id", stream["stream_id"])
    shard["streams"] = [stream]
    return shard


def _check_addresses(
    shards: Sequence[ShardSpec], proxy: ProxySpec | None, opts: Mapping[str, Any], path: str
) -> None:
    """Every bound port once; non-loopback binds only where allowed."""
    seen: dict[tuple[str, str], str] = {}

    def claim(address: str, owner: str, remote_ok: bool, where: str, http: bool = False) -> None:
        try:
            key, host = (
                security.http_endpoint(address) if http else security.fixed_endpoint(address)
            )
        except ValueError as exc:
            hint = "" if http else " (the launcher connects to it)"
            raise LaunchError(f"{path}: {owner}: {exc}{hint}") from None
        if key in seen:
            what = "port" if key[0] == "tcp" else "ipc path"
            raise LaunchError(f"{path}: {what} {key[1]} is used twice: {seen[key]} and {owner}")
        seen[key] = owner
        if security.reachable_from_outside(host) and not remote_ok:
            raise LaunchError(
                f"{path}: {owner} binds {host}, which is reachable from other hosts; "
                f"set allow_remote = true ({where}) to mean it"
            )

    if proxy is not None:
        claim(proxy.bind, "the proxy bind", opts["allow_remote"], "[launcher]")
    if opts["http"] is not None:
        claim(opts["http"], "the launcher http", opts["allow_remote"], "[launcher]", http=True)
    for s in shards:
        where = f"shard {s.shard_id}"
        claim(s.pub, f"{where} pub", s.allow_remote, "in the shard")
        if s.control is not None:
            claim(s.control, f"{where} control", s.allow_remote, "in the shard")
        if s.http is not None:
            claim(s.http, f"{where} http", s.allow_remote, "in the shard", http=True)


def parse_launch(data: Mapping[str, Any], path: str = "<launch file>") -> LaunchConfig:
    """Validate a parsed launch file strictly: unknown keys, wrong types, duplicate ids
    and duplicate ports are one-line LaunchErrors naming the place."""
    top = _table(dict(data), path)
    _unknown(top, ["launcher", "proxy", "defaults", "shards", "streams"], path)
    opts = _launcher_options(top.get("launcher", {}), f"{path}: [launcher]")
    proxy = _proxy_spec(top["proxy"], f"{path}: [proxy]") if "proxy" in top else None
    defaults = _table(top.get("defaults", {}), f"{path}: [defaults]")
    for key in ("stream_id", "source", "streams", "shard_id"):
        if key in defaults:
            raise LaunchError(f"{path}: [defaults]: {key} is not a default; set it per table")
    _unknown(defaults, _shard_keys(), f"{path}: [defaults]")
    if "shards" in top and "streams" in top:
        raise LaunchError(
            f"{path}: give either [[shards]] (one process per GPU, its streams inside) or "
            "top-level [[streams]] (the older one process per stream), not both"
        )
    legacy = "streams" in top
    raw = _tables(
        top.get("shards", top.get("streams", [])), path, "streams" if legacy else "shards"
    )
    if not raw and (proxy is None or not proxy.upstreams):
        raise LaunchError(f"{path}: no [[shards]] (and no [proxy] upstreams to forward)")
    shards: list[ShardSpec] = []
    shard_ids: dict[str, str] = {}
    stream_ids: dict[str, str] = {}
    for n, table in enumerate(raw):
        table = _table(table, f"{path}: {'streams' if legacy else 'shards'}[{n}]")
        key = "stream_id" if legacy else "shard_id"
        name = table.get(key)
        label = f"{'streams' if legacy else 'shards'}[{n}]"
        where = f"{path}: {label}" + (f" ({_name(name)})" if isinstance(name, str) else "")
        merged = {**defaults, **(_legacy_shard(table) if legacy else table)}
        shard = _shard_spec(merged, n, where, legacy)
        for i, s in enumerate(shard.streams):
            here = label if legacy else f"{label} streams[{i}]"
            if s.stream_id in stream_ids:
                raise LaunchError(
                    f"{path}: stream id {s.stream_id!r} is used twice "
                    f"({stream_ids[s.stream_id]} and {here})"
                )
            stream_ids[s.stream_id] = here
        if shard.shard_id in shard_ids:
            raise LaunchError(
                f"{path}: shard id {shard.shard_id!r} is used twice "
                f"({shard_ids[shard.shard_id]} and {label})"
            )
        shard_ids[shard.shard_id] = label
        shards.append(shard)
    _check_addresses(shards, proxy, opts, path)
    curve = [s.shard_id for s in shards if s.curve_secret]
    needs_key = curve or (proxy is not None and proxy.upstream_curve_server)
    if needs_key and opts["curve_secret"] is None:
        what = f"shard {curve[0]} runs" if curve else "the upstreams run"
        raise LaunchError(
            f"{path}: {what} with CurveZMQ, so the launcher needs its own key to read it: "
            "set curve_secret in [launcher] (and put its public key in curve_clients)"
        )
    if proxy is not None:
        local = {security.connect_address(s.pub) for s in shards}
        for up in proxy.upstreams:
            if up in local:
                raise LaunchError(f"{path}: [proxy] upstream {up} is a shard's own pub")
    return LaunchConfig(path=path, shards=tuple(shards), proxy=proxy, options=opts)


def load_launch_file(path: str | os.PathLike[str]) -> LaunchConfig:
    """Read and validate a launch file (LaunchError on any mistake)."""
    name = str(path)
    try:
        data = settings.load_toml(name, "launch file")
    except ValueError as exc:
        raise LaunchError(str(exc)) from None
    return parse_launch(data, shown(name))
