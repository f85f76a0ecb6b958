"""Hostile configuration and command lines (issue #20), found by a machine: random TOML
stream tables for the node (`run --config`) and the launcher (`launch`): random types,
sizes, unicode, missing and extra keys; random values for the flags of `run`,
`subscribe` and `prompt`. Every one either works or is refused with one short line of
the project's own kind (ValueError / LaunchError naming the file; on the command line
exit status 2), never another exception or a traceback, and user input is quoted
shortened (`limits.quote`).

Nothing here builds a model in the random loops: `run` is given one remote bind it must
refuse (the canary), the last check before the node is built, so every other check has
run; `subscribe` and `prompt` talk to an address where nobody answers."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sam2long_stream import settings as node_settings
from sam2long_stream.cli import UsageError, build_parser, main, run_config
from sam2long_stream.limits import MAX_ERROR_CHARS, MAX_FRAME_SIDE, MAX_QUOTE_CHARS
from sam2long_stream.supervisor import LaunchError, load_launch_file, node_toml

MAX_LINE = MAX_ERROR_CHARS  # the longest error: a where, a quoted value, the known keys
LONG = 100  # strings at least this long must never appear whole in an error

# --------------------------------------------------------------------------- TOML


def toml_value(value: Any) -> str:
    """Any value tomllib can give back, written as TOML (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_text(data: dict[str, Any]) -> str:
    return "".join(f"{toml_value(k)} = {toml_value(v)}\n" for k, v in data.items())


@contextlib.contextmanager
def toml_file(data: dict[str, Any], name: str) -> Iterator[str]:
    """`data` written as a TOML file in a fresh directory (hypothesis runs many examples
    in one test, so no pytest tmp_path)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(toml_text(data), encoding="utf-8")
        yield str(path)


def long_strings(value: Any) -> list[str]:
    """Every string (value or key) of at least LONG characters in `value`."""
    if isinstance(value, str):
        return [value] if len(value) >= LONG else []
    if isinstance(value, list):
        return [s for v in value for s in long_strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in long_strings(k) + long_strings(v)]
    return []


def assert_one_short_line(text: str, given: Any, limit: int = MAX_LINE) -> None:
    """One line, at most `limit` characters, quoting no long input whole."""
    assert text.strip() and "\n" not in text and "\r" not in text, text[:limit]
    assert len(text) <= limit, f"{len(text)} characters: {text[:limit]}..."
    for s in long_strings(given):
        assert s[:MAX_QUOTE_CHARS] not in text, f"unshortened input in: {text[:MAX_LINE]}"


HUGE = st.text(
    alphabet="ab\u00e9\u4e2d\U0001f600/:?&=\"'\\\n\t\x00\x7f ", min_size=3000, max_size=5000
)
ADDRESSES = [
    "tcp://127.0.0.1:5999", "tcp://127.0.0.1:*", "tcp://0.0.0.0:5556", "tcp://[::1]:6001",
    "tcp://localhost:6002", "ipc:///tmp/s2l-hostile", "tcp://nohost:notaport", "foo://x",
    "tcp://127.0.0.1:99999", "tcp://127.0.0.1:\u0661\u0662", "off", "127.0.0.1:8080",
    "0.0.0.0:8080", "[::1]:0", "nope",
]  # fmt: skip
SOURCES = [
    "synthetic://moving-shapes", "synthetic://moving-shapes?width=20000", "rtsp://u:p@h/x",
    "whip://127.0.0.1:8080/in", "whip://0.0.0.0:8080/in", "whip://h:notaport/in", "whip://[",
    "ftp://x", "", "  ", "/nonexistent/video.mp4",
]  # fmt: skip
STREAM_IDS = ["cam0", "cam1", "door", "a/b", "", ".x", "x" * 65, "d\u00f6r"]
STRINGS = [
    *ADDRESSES, *SOURCES, *STREAM_IDS, "random", "sam2long_mini", "sam2.1_hiera_t",
    "sam3_giant", "cpu", "auto", "cuda:0", "tpu", "none", "cuda", "bogus", "latest", "all",
    "rle", "bits", "tcp", "udp", "1s", "10f", "0f", "-1s", "1e999s", "nan",
]  # fmt: skip
_scalars = st.one_of(
    st.text(max_size=30),
    HUGE,
    st.sampled_from(STRINGS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 64, 100, 128, 1024, 16384, 2**31, 2**63 - 1]),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Three times in four a value from `good`, else anything TOML holds: enough
    examples get past the first check to reach the later ones."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: good if ok else _values)


PLAUSIBLE_STRINGS: dict[str, list[str]] = {
    "checkpoint": ["random", "off", "/nonexistent/model.pt"],
    "model": ["sam2long_mini", "sam2.1_hiera_t", "sam3_giant"],
    "device": ["cpu", "auto", "cuda:0", "tpu"],
    "pub": ADDRESSES,
    "control": ADDRESSES,
    "http": ["off", "127.0.0.1:8080", "0.0.0.0:8080", "[::1]:0", "nope", "127.0.0.1:99999"],
    "curve_secret": ["off", "/nonexistent/node.key_secret"],
    "curve_clients": ["off", "/nonexistent/clients"],
    "tls_cert": ["off", "/nonexistent/cert.pem"],
    "tls_key": ["off", "/nonexistent/key.pem"],
    "hwaccel": ["none", "auto", "cuda", "bogus"],
    "lost_after": ["1s", "10f", "0.5", "0f", "-1s", "1e999s"],
    "overlay_out": ["off", "/nonexistent/dir/overlay.mp4", "overlay.txt"],
    "overlay_png": ["off", "/nonexistent/dir/overlay.png", "overlay"],
    "stream_id": STREAM_IDS,
}


def _plausible(option: node_settings.Option) -> st.SearchStrategy[Any]:
    """Values of the option's own type, mostly in range: they get past the first checks."""
    if option.choices:
        return st.sampled_from(option.choices) | st.text(max_size=8)
    if option.kind is bool:
        return st.booleans()
    if option.kind is int:
        low = -5 if option.low is None else int(option.low) - 1
        high = 2000 if option.high is None else int(option.high) + 1
        return st.integers(low, high) | st.sampled_from([2**63 - 1, -(2**63)])
    if option.kind is float:
        return st.floats(-1.0, 100.0) | st.sampled_from([0.0, 1e-3, 30.0, 1e300])
    return st.sampled_from(PLAUSIBLE_STRINGS.get(option.key, STRINGS))


@st.composite
def option_tables(draw: st.DrawFn, *scopes: node_settings.Scope) -> dict[str, Any]:
    """A few options of these scopes (under their key, or the key with dashes), mostly
    plausible values, and now and then an unknown key."""
    chosen = draw(st.lists(st.sampled_from(node_settings.options(*scopes)), max_size=3))
    table: dict[str, Any] = {}
    for option in chosen:
        key = draw(st.sampled_from([option.key, option.key.replace("_", "-")]))
        table[key] = draw(mostly(_plausible(option)))
    if draw(st.integers(0, 5)) == 5:
        table[draw(_keys)] = draw(_values)
    return table


_keys = st.one_of(
    st.sampled_from([o.key for o in node_settings.OPTIONS]),
    st.text(max_size=12),
    st.text(min_size=LONG, max_size=300),
)
_numbers = st.one_of(st.integers(-5, 300), st.floats(), st.sampled_from([1e309, -0.0, 2**70]))
_coord = st.integers(0, 60) | st.floats(0, 60)
_point = mostly(st.lists(_coord, min_size=2, max_size=2)) | st.lists(_numbers, max_size=3)
_box = st.builds(lambda x, y, w, h: [x, y, x + w, y + h], _coord, _coord, _coord, _coord)
_prompt = st.builds(
    lambda table, extra: {**table, **extra},
    st.fixed_dictionaries(
        {"id": mostly(st.integers(0, 3) | st.sampled_from([-1, 2**31, 2**63 - 1]))},
        optional={
            "box": mostly(_box | st.lists(_numbers, min_size=4, max_size=4)),
            "points": mostly(st.lists(_point, min_size=1, max_size=3)),
            "labels": mostly(st.lists(st.sampled_from([0, 1, 2, -1, True]), max_size=3)),
        },
    ),
    st.sampled_from([{}, {}, {}, {"extra": 1}, {"x" * 300: 1}]),
)
_prompts = mostly(st.lists(_prompt, max_size=3))
_zone = st.fixed_dictionaries(
    {
        "name": mostly(st.sampled_from(["door", "a b", "", "x" * 65, "y" * 300])),
        "polygon": mostly(st.lists(_point, min_size=3, max_size=5)),
    },
    optional={"enter": mostly(st.floats(-1, 2)), "leave": mostly(st.floats(-1, 2))},
)
_zones = mostly(st.lists(_zone, max_size=2))
_source = mostly(st.sampled_from(SOURCES[:1] * 6 + SOURCES))
_stream_table = st.builds(
    lambda table, options: {**options, **table},
    st.fixed_dictionaries(
        {"source": _source},
        optional={
            "stream_id": mostly(st.sampled_from(STREAM_IDS)),
            "prompts": _prompts,
            "zones": _zones,
        },
    ),
    option_tables("stream"),
)
_node_file = st.builds(
    lambda table, options: {**options, **table},
    st.one_of(
        st.fixed_dictionaries({"source": _source}, optional={"prompts": _prompts}),
        st.fixed_dictionaries(
            {"streams": mostly(st.lists(_stream_table, min_size=1, max_size=3))},
            optional={"prompts": _prompts, "zones": _zones, "source": _source},
        ),
        st.dictionaries(st.sampled_from(["source", "streams", "prompts", "zones"]), _values),
    ),
    option_tables(),
)
TOML_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@TOML_SETTINGS
@given(_node_file)
def test_random_node_files_load_or_fail_in_one_short_line(data: dict[str, Any]) -> None:
    """`run --config`: the file is read (naming the file in any error), then the whole
    configuration is built exactly as `run` builds it, before any model."""
    with toml_file(data, "node.toml") as path:
        try:
            settings_file = node_settings.read_toml(path)
        except ValueError as exc:
            assert type(exc) is ValueError
            assert str(exc).startswith(f"{path}: "), str(exc)[:MAX_LINE]
            assert_one_short_line(str(exc), data)
            return
        assert isinstance(settings_file, node_settings.NodeFile)
        try:
            config = run_config(build_parser().parse_args(["run", "--config", path]))
        except ValueError as exc:
            assert type(exc) in (ValueError, UsageError)
            assert_one_short_line(str(exc), data)
            return
    assert 1 <= len(config.streams) <= 3


def test_node_files_that_are_not_toml_are_one_line(tmp_path: Path) -> None:
    for name, content in (
        ("binary.toml", bytes(range(256)) * 20),
        ("latin1.toml", 'source = "caf\xe9"\n'.encode("latin-1")),
        ("broken.toml", b"[[streams]\nsource = 'x'\n" + b"x" * 5000),
        ("deep.toml", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    ):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            node_settings.read_toml(str(path))
        assert type(info.value) is ValueError and str(info.value).startswith(str(path))
        assert_one_short_line(str(info.value), {})


@st.composite
def launch_files(draw: st.DrawFn) -> dict[str, Any]:
    """Launch files: up to three shards on their own ports (mostly), each with up to
    three streams, options, prompts, [launcher], [proxy], [defaults], and stray keys."""
    from sam2long_stream.supervisor.config import LAUNCHER_DEFAULTS

    shards = []
    for n in range(draw(st.sampled_from([1, 2, 1, 3, 2, 0]))):
        shard: dict[str, Any] = {
            "shard_id": f"gpu{n}",
            "pub": f"tcp://127.0.0.1:{7000 + 2 * n}",
            "control": f"tcp://127.0.0.1:{7001 + 2 * n}",
            **draw(option_tables("model", "node", "stream")),
        }
        extra = {
            "shard_id": mostly(st.sampled_from(["gpu0", "a/b", "", "x" * 300])),
            "restart": mostly(st.sampled_from(["never", "always", "sometimes"])),
            "env": mostly(st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
            "args": mostly(st.lists(st.text(max_size=5), max_size=2)),
            "command": mostly(st.lists(st.text(max_size=5), max_size=2)),
            "prompts": _prompts,
        }
        shard.update(draw(st.fixed_dictionaries({}, optional=extra)))
        streams = []
        for k in range(draw(st.sampled_from([1, 2, 1, 3, 0]))):
            table = draw(_stream_table)
            table["stream_id"] = draw(mostly(st.just(f"s{n}-{k}") | st.sampled_from(STREAM_IDS)))
            streams.append(table)
        shard["streams"] = draw(mostly(st.just(streams)))
        shards.append(shard)
    data: dict[str, Any] = {"shards": shards}
    if not shards and draw(st.booleans()):  # the older form: one process per stream
        data = {
            "streams": [
                {**s, "pub": f"tcp://127.0.0.1:{7200 + k}", "control": "off"}
                for k, s in enumerate(draw(st.lists(_stream_table, max_size=2)))
            ]
        }
    launcher_values = st.floats(0, 100) | st.booleans() | st.sampled_from(["127.0.0.1:8090"])
    sections = {
        "defaults": mostly(option_tables()),
        "launcher": mostly(
            st.dictionaries(
                st.sampled_from([*LAUNCHER_DEFAULTS, "x"]), mostly(launcher_values), max_size=3
            )
        ),
        "proxy": mostly(
            st.fixed_dictionaries(
                {"bind": mostly(st.sampled_from(["tcp://127.0.0.1:7100", *ADDRESSES]))},
                optional={"upstreams": mostly(st.lists(st.sampled_from(ADDRESSES), max_size=2))},
            )
        ),
        "streams": st.lists(_stream_table, max_size=2),  # with [[shards]]: refused
    }
    if "streams" in data:
        del sections["streams"]
    data.update(draw(st.fixed_dictionaries({}, optional=sections)))
    if draw(st.integers(0, 9)) == 9:
        data[draw(st.text(max_size=12) | st.text(min_size=LONG, max_size=300))] = draw(_values)
    return data


@TOML_SETTINGS
@given(launch_files())
def test_random_launch_files_load_or_fail_in_one_short_line_and_nodes_accept_them(
    data: dict[str, Any],
) -> None:
    """`launch`: a LaunchError naming the file, or a plan whose every shard's node file
    `run --config` reads and builds (what the launcher accepts, the node accepts)."""
    with toml_file(data, "site.toml") as path:
        try:
            launch = load_launch_file(path)
        except LaunchError as exc:
            assert type(exc) is LaunchError
            assert str(exc).startswith(f"{path}: "), str(exc)[:MAX_LINE]
            assert_one_short_line(str(exc), data)
            return
        for shard in launch.shards:
            node_file = Path(path).with_name(f"{shard.shard_id}.toml")
            node_file.write_text(node_toml(shard), encoding="utf-8")
            try:
                config = run_config(build_parser().parse_args(["run", "--config", str(node_file)]))
            except ValueError as exc:
                # Files are checked where the node runs (`launch --check` may run on
                # another machine); everything else the launcher has refused already.
                assert str(exc).startswith("checkpoint not found: "), exc
                continue
            assert [s.stream_id for s in config.streams] == list(shard.stream_ids)


# --------------------------------------------------------------------------- command line

Labelled = tuple[str, bool | None]  # a flag's text and whether it is valid (None: unknown)
ERROR_LINE = MAX_ERROR_CHARS + 100  # the prefix and "(see sam2long-stream ... --help)"
NOWHERE = "tcp://127.0.0.1:1"  # well-formed, and nobody answers there
SYN = "synthetic://moving-shapes"
CLI_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def call(argv: list[str]) -> tuple[int, str, str]:
    """`sam2long-stream ARGV` in this process: (exit status, stdout, stderr). Anything
    but SystemExit escapes, which is what a user would see as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return status, out.getvalue(), err.getvalue()


def the_error_line(err: str, argv: list[str]) -> str:
    """The one error line on stderr (at most a start line before it), short, quoting no
    long argument whole."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("sam2long-stream: error: ")]
    assert "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err[:2000]
    assert len(lines) <= 2, err[:2000]
    values = [arg.partition("=")[2] or arg for arg in argv]  # "--flag=VALUE" -> VALUE
    assert_one_short_line(errors[0], values, ERROR_LINE)
    return errors[0]


def good(*values: str) -> st.SearchStrategy[Labelled]:
    return st.sampled_from([(v, True) for v in values])


def bad(*values: str | st.SearchStrategy[str]) -> st.SearchStrategy[Labelled]:
    texts = [v for v in values if isinstance(v, str)]
    more = [v for v in values if not isinstance(v, str)]
    return st.one_of(st.sampled_from(texts), *more).map(lambda v: (v, False))


def unknown(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Labelled]:
    return strategy.map(lambda v: (v, None))


def often(
    valid: st.SearchStrategy[Labelled], other: st.SearchStrategy[Labelled]
) -> st.SearchStrategy[Labelled]:
    """`valid` three times in four: with several flags, some examples get past them all."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: valid if ok else other)


# What argv can hold: no NUL; "\udce9" is how Python shows an undecodable byte.
ARG = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=20)
HUGE_ARG = st.text(alphabet="ab\u00e9\u4e2d\U0001f600/:?&=\"'\\\n\t\x7f ", min_size=3000)
ODD = st.sampled_from(["", " ", "caf\udce9", "\u0661\u0662", "-1", "--x", "1e999", "nan"])
ANY_ARG = unknown(ARG | HUGE_ARG | ODD)
BAD_ADDRESSES = (
    "foo", "foo://x", "", "tcp://nohost:notaport", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:0",
    "tcp://*:5556", "tcp://a b:5", "tcp://:5", "ipc://", "tcp://127.0.0.1:\u0661\u0662",
    HUGE_ARG.map(lambda s: f"tcp://{s}:5"),
)  # fmt: skip
# As bind addresses of `run`, port 0 picks a free port and "" is "off" (control).
BAD_BINDS = tuple(a for a in BAD_ADDRESSES if a not in ("", "tcp://127.0.0.1:0"))
BAD_NUMBERS = ("x", "nan", "inf", "-inf", "1e999", "", HUGE_ARG, st.just("9" * 5000))


def _run_values(option: node_settings.Option) -> st.SearchStrategy[Labelled]:
    """Labelled values for one `run` flag, from its declaration."""
    if option.choices:
        return good(*option.choices) | bad("sometimes", HUGE_ARG) | ANY_ARG
    if option.kind in (int, float):
        low = -(10**6) if option.low is None else option.low
        high = 10**6 if option.high is None else option.high
        numbers = st.integers(int(low), int(high)) if option.kind is int else st.floats(low, high)
        if option.key == "image_size":  # TrackerConfig: a multiple of 64
            numbers = st.integers(1, int(high) // 64).map(lambda k: 64 * k)
        if option.key == "max_objects":  # room for a --box and a --point prompt
            numbers = st.integers(2, int(high))
        outside = [str(int(low) - 1)] if option.low is not None else []
        outside += ["100"] if option.key == "image_size" else []
        outside += [str(int(high) + 1)] if option.high is not None else []
        if option.kind is int:
            outside.append("1.5")
        return numbers.map(lambda v: (str(v), True)) | bad(*outside, *BAD_NUMBERS) | ANY_ARG
    return {
        "checkpoint": good("random") | bad("/nonexistent/model.pt", HUGE_ARG),
        "model": good("sam2long_mini", "sam2.1_hiera_t") | bad("sam3_giant", HUGE_ARG),
        "device": good("cpu", "auto") | ANY_ARG,
        "pub": good("tcp://127.0.0.1:5999", "ipc:///tmp/s2l-hostile") | bad(*BAD_BINDS),
        "control": good("tcp://127.0.0.1:5998", "off", "") | bad(*BAD_BINDS),
        "http": good("127.0.0.1:8081", "off") | bad("nope", "127.0.0.1:99999", HUGE_ARG),
        "hwaccel": good("none", "auto") | bad("bogus", HUGE_ARG),
        "lost_after": good("1s", "10f", "0.5") | bad("x", "0f", "-1s", "1e999s", HUGE_ARG),
    }.get(option.key, ANY_ARG)


def _run_flag(option: node_settings.Option) -> st.SearchStrategy[tuple[list[str], bool | None]]:
    flag = option.flag
    if option.kind is bool:
        no = "--no-" + flag[2:]
        return st.sampled_from([([flag], True), ([no], True), ([f"{flag}=yes"], False)])
    return _run_values(option).map(lambda tv: ([f"{flag}={tv[0]}"], tv[1]))


def _labelled(flag: str, values: st.SearchStrategy[Labelled]) -> st.SearchStrategy[Any]:
    return values.map(lambda tv: ([f"{flag}={tv[0]}"], tv[1]))


RUN_FLAGS: dict[str, st.SearchStrategy[tuple[list[str], bool | None]]] = {
    **{o.key: _run_flag(o) for o in node_settings.OPTIONS if o.key not in ("allow_remote",)},
    "stream_id": _labelled("--stream-id", good("door") | bad("a/b", "", HUGE_ARG)),
    "box": _labelled("--box", good("1,2,3,4") | bad("1,2,3", "nan,0,1,1", "4,4,1,1", HUGE_ARG)),
    "point": _labelled("--point", good("1,2", "1,2,0") | bad("1", "1,2,5", HUGE_ARG)),
    "point_object": _labelled("--point-object", bad("-1", "x", HUGE_ARG) | ANY_ARG),
    "config": _labelled("--config", bad("/nonexistent/node.toml", "/", HUGE_ARG)),
    "log_level": _labelled("--log-level", good("info", "WARNING") | bad("basic_format", "x")),
}


@CLI_SETTINGS
@given(st.lists(st.sampled_from(sorted(RUN_FLAGS)), min_size=1, max_size=3, unique=True), st.data())
def test_random_run_flags_are_one_line_and_exit_2(flags: list[str], data: st.DataObject) -> None:
    """`run` with hostile flag values and one remote bind it must refuse (the last check
    before a model is built): always exit 2 with one short line; the refused bind is
    the error exactly when every other value was valid."""
    canary, what = "--http=0.0.0.0:8082", "the HTTP endpoint"
    if "http" in flags:
        flags = [f for f in flags if f != "control"]
        canary, what = "--control=tcp://0.0.0.0:5997", "the control socket"
    argv, verdicts = ["run", SYN, canary], []
    for name in flags:
        args, verdict = data.draw(RUN_FLAGS[name], label=name)
        argv += args
        verdicts.append(verdict)
    status, out, err = call(argv)
    line = the_error_line(err, argv)
    assert status == 2 and out == "", (status, line)
    refused_canary = f"refusing to bind {what}" in line
    if all(v is True for v in verdicts):
        assert refused_canary, line
    elif False in verdicts:
        assert not refused_canary, line


SUBSCRIBE_FLAGS: dict[str, st.SearchStrategy[Labelled]] = {
    "--count": good("1", "2") | bad("0", "-1", "1.5", *BAD_NUMBERS),
    "--stream-id": good("cam0") | bad("a/b", "", ".x", HUGE_ARG),
    "--topic": ANY_ARG | good("masks/", "status/"),
    "--log-level": good("warning") | bad("basic_format", "verbose", HUGE_ARG),
    "--curve-secret": bad("/nonexistent/c.key_secret", HUGE_ARG),  # alone, or no such file
}


@CLI_SETTINGS
@given(
    often(good(NOWHERE, "ipc:///tmp/s2l-hostile-none", "tcp://localhost:1"), bad(*BAD_ADDRESSES)),
    often(good("0.05", "0.01"), bad("0", "-1", "604801", *BAD_NUMBERS)),
    st.dictionaries(st.sampled_from(sorted(SUBSCRIBE_FLAGS)), st.just(None), max_size=3),
    st.data(),
)
def test_random_subscribe_flags_work_or_are_one_line_and_exit_2(
    pub: Labelled, timeout: Labelled, chosen: dict[str, None], data: st.DataObject
) -> None:
    """`subscribe` to nobody, with hostile values: a bad value is exit 2 and one line;
    valid ones run to --timeout (exit 0, or 1 and one line when --count was not met)."""
    argv = ["subscribe", f"--pub={pub[0]}", f"--timeout={timeout[0]}"]
    verdicts = [pub[1], timeout[1]]
    for flag in chosen:
        text, verdict = data.draw(SUBSCRIBE_FLAGS[flag], label=flag)
        argv.append(f"{flag}={text}")
        verdicts.append(verdict)
    status, _, err = call(argv)
    if status != 0:
        line = the_error_line(err, argv)
    if False in verdicts:
        assert status == 2, (status, err[-500:])
    elif all(v is True for v in verdicts):
        assert status == (1 if "--count" in chosen else 0), err[-500:]
        if status:
            assert "received 0 of" in line


_ids = often(good("1", "0"), bad("-1", "2147483648", "x", HUGE_ARG))
_boxes = often(good("1,2,30,40"), bad("1,2,3", "4,4,1,1", "nan,1,2,3", HUGE_ARG))
_points = often(good("5,6", "5,6,0"), bad("5", "5,6,7", HUGE_ARG))


@st.composite
def prompt_actions(draw: st.DrawFn) -> tuple[list[str], list[bool | None]]:
    """One action of `prompt` with labelled values (a missing required part is bad)."""
    action = draw(st.sampled_from(["status", "reset", "add", "remove", "set", "add-stream",
                                   "remove-stream"]))  # fmt: skip
    argv, verdicts = [action], []

    def flag(name: str, values: st.SearchStrategy[Labelled]) -> None:
        text, verdict = draw(values, label=name)
        argv.append(f"{name}={text}")
        verdicts.append(verdict)

    if action == "add":
        parts = draw(st.sets(st.sampled_from(["--id", "--box", "--point", "--frame-seq"])))
        seqs = good("0", "17") | bad("-1", "x", HUGE_ARG)
        for name in sorted(parts):
            flag(
                name, {"--id": _ids, "--box": _boxes, "--point": _points, "--frame-seq": seqs}[name]
            )
        if not parts & {"--box", "--point"}:
            verdicts.append(False)  # "prompt add needs --box and/or --point"
    elif action == "remove":
        if draw(st.booleans()):
            flag("--id", _ids)
        else:
            verdicts.append(False)  # --id is required
    elif action == "set":
        key, value = draw(ANY_ARG), draw(ANY_ARG)
        argv += [key[0], value[0]]
        verdicts.append(None)
    elif action == "add-stream":
        source = draw(good(SYN, "/nonexistent/video.mp4") | ANY_ARG)
        argv.append(source[0])
        verdicts.append(None if source[0].startswith("-") else True)
        if draw(st.booleans()):
            flag("--box", _boxes)
    elif action == "remove-stream":
        if draw(st.booleans()):
            stream = draw(good("door") | bad("a/b", "", HUGE_ARG))
            argv.append(stream[0])
            verdicts.append(stream[1] if stream[0] else None)  # "" is no id at all
        else:
            verdicts.append(None)  # fine with --stream, else "needs the stream's id"
    return argv, verdicts


@CLI_SETTINGS
@given(
    often(good(NOWHERE, "ipc:///tmp/s2l-hostile-none"), bad(*BAD_ADDRESSES)),
    often(good("0.05", "0.02"), bad("0", "-1", "604801", *BAD_NUMBERS)),
    st.none() | often(good("cam0"), bad("a/b", "", HUGE_ARG)),
    prompt_actions(),
)
def test_random_prompt_flags_are_one_line_exit_2_or_a_timeout_exit_1(
    control: Labelled,
    timeout: Labelled,
    stream: Labelled | None,
    action: tuple[list[str], list[bool | None]],
) -> None:
    """`prompt` to nobody, with hostile values: a bad value is exit 2 and one line;
    valid ones send the request and time out: exit 1, one line (a runtime failure)."""
    argv = ["prompt", f"--control={control[0]}", f"--timeout={timeout[0]}"]
    verdicts = [control[1], timeout[1], *action[1]]
    if stream is not None:
        argv.append(f"--stream={stream[0]}")
        verdicts.append(stream[1])
    argv += action[0]
    status, out, err = call(argv)
    line = the_error_line(err, argv)
    assert out == "" and status in (1, 2), (status, out)
    if False in verdicts:
        assert status == 2, line
    elif all(v is True for v in verdicts):
        assert status == 1 and ("no reply from" in line or "no control server" in line), line


def test_run_refuses_a_file_of_frames_larger_than_the_one_size_constant(tmp_path: Path) -> None:
    """Oversize frames are refused at the source, never downscaled: `run` of such a file
    is a usage error (exit 2) before anything is tracked, naming the limit."""
    from tests.test_hostile import wide_video

    wide = wide_video(tmp_path / "wide.avi")
    result = subprocess.run(
        [sys.executable, "-m", "sam2long_stream.cli", "run", str(wide), "--pub",
         "tcp://127.0.0.1:*", "--control", "off"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    line = the_error_line(result.stderr, [])
    assert result.returncode == 2, result.stderr
    assert f"exceeds the largest the node accepts ({MAX_FRAME_SIDE} px a side)" in line
    assert result.stdout == ""
