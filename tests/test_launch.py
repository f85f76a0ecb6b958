"""`sam2long-stream launch`: launch-file validation (shards of streams, and the older
one-process-per-stream files), the node file each shard gets, the XSUB/XPUB proxy on real
sockets, and the launcher supervising processes.

Two kinds of child process. A stand-in shard (`FAKE_SHARD`: reads its node file with the
node's own reader, binds its pub and publishes ``status/<id>`` for each of its streams,
as a multi-stream node does) drives the supervision tests: restart with backoff,
hang detection, one row per stream, one address for every shard, and the secrets
rule. The tests marked ``node`` at the end run the real multi-stream node (CPU, random
weights, 128 px images): masks from two shards through one proxy address, restart after
SIGKILL, clean SIGTERM, and nodes dying with a SIGKILLed launcher.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
import zmq.auth
from prometheus_client.parser import text_string_to_metric_families
from zmq.auth.thread import ThreadAuthenticator

from sam2long_stream import security, settings
from sam2long_stream.cli import build_parser, run_config
from sam2long_stream.events import Zone
from sam2long_stream.supervisor import (
    Launcher,
    LaunchError,
    Proxy,
    Upstream,
    add_parser,
    cmd_launch,
    connect_upstreams,
    format_table,
    load_launch_file,
    node_argv,
    node_table,
    node_toml,
    parse_launch,
)
from sam2long_stream.tracker.config import Prompt
from sam2long_stream.transport import wire
from sam2long_stream.transport.subscriber import Subscriber
from tests.conftest import REPO_ROOT, free_port

LAUNCH = [sys.executable, "-m", "sam2long_stream.supervisor"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SYN = "synthetic://moving-shapes?width=128&height=96&fps=3"
# A small, cheap node: 128 px model input, one pathway, one torch thread, on the CPU.
SMALL = {"image_size": 128, "pathways": 1, "threads": 1, "seed": 0, "device": "cpu"}
# Sources with secrets in them, and the secrets themselves.
RTSP_SECRET = "rtsp://viewer:s3cr3t-pw@127.0.0.1:9/live"
WHIP_SECRET = "whip://127.0.0.1:9/whip/door?token=T0KEN-42"
SECRETS = ("s3cr3t-pw", "T0KEN-42")

FAKE_SHARD = r'''
"""A stand-in shard: reads its node file as `run --config` does, binds its pub and
publishes status/<id> for every stream, as a multi-stream node does. FAKE_* steer it."""
import os, sys, time
import zmq
from sam2long_stream import settings
from sam2long_stream.transport import wire

assert sys.argv[1:3] == ["run", "--config"], sys.argv
node = settings.read_toml(sys.argv[3])
streams = [(v["stream_id"], v["source"]) for v, _ in node.streams]
# Quotes every source, secrets and all: the launcher must mask them in what it shows.
print("fake shard up:", " ".join(src for _, src in streams), flush=True)
if os.environ.get("FAKE_EXIT"):
    sys.exit(int(os.environ["FAKE_EXIT"]))
ctx = zmq.Context()
pub = ctx.socket(zmq.XPUB)
pub.bind(node.values["pub"])
silent_after = float(os.environ.get("FAKE_SILENT_AFTER", "inf"))
start, n = time.monotonic(), 0
while True:
    if time.monotonic() - start < silent_after:
        for i, (sid, src) in enumerate(streams):
            if i == 0 and os.environ.get("FAKE_ERROR"):
                fields = {"error": f"cannot open {src} (401 Unauthorized)"}
                pub.send_multipart(wire.encode_status(sid, "error", **fields))
            else:
                fields = {"fps": 2.0 + i, "latency_ms": 12.5, "dropped_frames": n}
                pub.send_multipart(wire.encode_status(sid, "running", **fields))
    n += 1
    time.sleep(0.2)
'''


def toml_of(data: dict[str, Any]) -> str:
    """Enough TOML for the tests' launch files (tables, arrays of tables, scalars)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    def table(name: str, t: dict[str, Any], array: bool = False) -> list[str]:
        head = f"[[{name}]]" if array else f"[{name}]"
        lines = [head] if name else []
        subs = []
        for k, v in t.items():
            if isinstance(v, dict) and k != "env":
                subs.append((f"{name}.{k}" if name else k, v, False))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                subs += [(f"{name}.{k}" if name else k, x, True) for x in v]
            else:
                lines.append(f"{k} = {value(v)}")
        for sub_name, sub, arr in subs:
            lines += ["", *table(sub_name, sub, arr)]
        return lines

    text = "\n".join(table("", data)) + "\n"
    assert tomllib.loads(text) == data
    return text


def shard(shard_id: str, *streams: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "shard_id": shard_id,
        "pub": f"tcp://127.0.0.1:{free_port()}",
        "control": "off",
        **kw,
        "streams": list(streams),
    }


def stream(sid: str, **kw: Any) -> dict[str, Any]:
    return {"stream_id": sid, "source": SYN, **kw}


# --------------------------------------------------------------------------- validation


def test_example_launch_files_are_valid() -> None:
    files = sorted(
        p for p in (REPO_ROOT / "launch").glob("*.toml") if p.name != "node.example.toml"
    )
    names = {p.name for p in files}
    assert {"one-camera.toml", "four-cameras-one-gpu.toml", "eight-cameras-two-gpus.toml"} <= names
    configs = {p.name: load_launch_file(p) for p in files}
    one = configs["one-camera.toml"]
    assert len(one.shards) == 1 and len(one.streams) == 1 and one.proxy is None
    four = configs["four-cameras-one-gpu.toml"]
    (gpu,) = four.shards  # four cameras, one process, one model
    assert gpu.device == "cuda:0" and len(gpu.streams) == 4
    assert four.proxy is not None and four.proxy.bind == "tcp://127.0.0.1:5556"
    eight = configs["eight-cameras-two-gpus.toml"]
    assert [(s.device, len(s.streams)) for s in eight.shards] == [("cuda:0", 4), ("cuda:1", 4)]
    # The CLI says the same: one line per shard, one per stream under it.
    out = subprocess.run(
        [*LAUNCH, str(REPO_ROOT / "launch" / "eight-cameras-two-gpus.toml"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr
    assert "8 streams in 2 shards OK" in out.stdout
    assert out.stdout.count("one process on cuda:1") == 1


def good() -> dict[str, Any]:
    return {
        "proxy": {"bind": "tcp://127.0.0.1:7000"},
        "defaults": {"image_size": 256},
        "shards": [
            {
                "shard_id": "gpu0",
                "device": "cuda:0",
                "pub": "tcp://127.0.0.1:7001",
                "control": "off",
                "streams": [
                    {"stream_id": "a", "source": SYN},
                    {
                        "stream_id": "b",
                        "source": SYN,
                        "prompts": [{"id": 1, "box": [1, 2, 30, 40]}],
                    },
                ],
            },
            {
                "shard_id": "gpu1",
                "device": "cuda:1",
                "pub": "tcp://127.0.0.1:7002",
                "control": "tcp://127.0.0.1:7003",
                "streams": [{"stream_id": "c", "source": SYN}],
            },
        ],
    }


def with_change(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = good()
    fn(data)
    return data


def _s(d: dict[str, Any], i: int, j: int | None = None) -> dict[str, Any]:
    return d["shards"][i] if j is None else d["shards"][i]["streams"][j]


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("top-level key", lambda d: d.update(stream=[]), "unknown key 'stream'"),
    (
        "stream key",
        lambda d: _s(d, 0, 0).update(sorce="x"),
        "shards[0] (gpu0) streams[0] (a): unknown key 'sorce'",
    ),
    ("shard key", lambda d: _s(d, 1).update(devise="x"), "shards[1] (gpu1): unknown key 'devise'"),
    ("launcher key", lambda d: d.update(launcher={"restart": 1}), "[launcher]: unknown key"),
    ("proxy key", lambda d: d["proxy"].update(port=1), "[proxy]: unknown key 'port'"),
    ("defaults key", lambda d: d["defaults"].update(imagesize=1), "[defaults]: unknown key"),
    (
        "duplicate stream id",
        lambda d: _s(d, 1, 0).update(stream_id="a"),
        "stream id 'a' is used twice (shards[0] streams[0] and shards[1] streams[0])",
    ),
    (
        "duplicate shard id",
        lambda d: _s(d, 1).update(shard_id="gpu0"),
        "shard id 'gpu0' is used twice (shards[0] and shards[1])",
    ),
    (
        "duplicate port",
        lambda d: _s(d, 1).update(control="tcp://127.0.0.1:7001"),
        "port 7001 is used twice: shard gpu0 pub and shard gpu1 control",
    ),
    (
        "proxy port clash",
        lambda d: _s(d, 0).update(pub="tcp://0.0.0.0:7000", allow_remote=True),
        "port 7000 is used twice: the proxy bind and shard gpu0 pub",
    ),
    ("wildcard port", lambda d: _s(d, 0).update(pub="tcp://127.0.0.1:*"), "a fixed port"),
    ("missing source", lambda d: _s(d, 0, 0).pop("source"), "(a): source is required"),
    ("missing control", lambda d: _s(d, 0).pop("control"), 'use "off" for none'),
    ("wrong type", lambda d: d["defaults"].update(image_size="256"), "image_size must be an int"),
    ("node's own check", lambda d: d["defaults"].update(image_size=100), "multiple of 64"),
    ("bad stream id", lambda d: _s(d, 0, 0).update(stream_id="a/b"), "1-64 characters"),
    ("bad shard id", lambda d: _s(d, 0).update(shard_id="g/0"), "shard_id: stream id must be"),
    ("bad prompt", lambda d: _s(d, 0, 1)["prompts"][0].update(box=[5, 5, 1, 1]), "x0 < x1"),
    (
        "too many prompts",
        lambda d: _s(d, 0, 1).update(
            max_objects=1, prompts=[{"id": 1, "box": [1, 2, 3, 4]}, {"id": 2, "box": [1, 2, 3, 4]}]
        ),
        "stream b: 2 prompts, max_objects is 1",
    ),
    ("remote bind", lambda d: d["proxy"].update(bind="tcp://0.0.0.0:7000"), "allow_remote"),
    ("restart", lambda d: _s(d, 0).update(restart="sometimes"), "restart must be one of"),
    ("no shards", lambda d: d.update(shards=[]), "no [[shards]]"),
    ("empty shard", lambda d: _s(d, 1).update(streams=[]), "at least one stream"),
    ("env", lambda d: _s(d, 0).update(env={"A": 1}), "env must be a table of strings"),
    ("command", lambda d: _s(d, 0).update(command="python"), "command must be a list of strings"),
    ("backoff", lambda d: d.update(launcher={"restart_max_delay_s": 0.1}), "restart_max_delay_s"),
    (
        "curve shard, no launcher key",
        lambda d: _s(d, 1).update(curve_secret="n.key_secret", curve_clients="c"),
        "shard gpu1 runs with CurveZMQ, so the launcher needs its own key",
    ),
    (
        "curve half",
        lambda d: _s(d, 1).update(curve_secret="n.key_secret"),
        "CurveZMQ needs both curve_secret",
    ),
    (
        "proxy curve half",
        lambda d: d["proxy"].update(curve_secret="p.key_secret"),
        "curve_secret and curve_clients go together",
    ),
    (
        "remote http",
        lambda d: _s(d, 0).update(http="0.0.0.0:7010"),
        "refusing to bind the HTTP endpoint to 0.0.0.0:7010: not a loopback address",
    ),
    # Process options belong to the shard: one process, one pub, one model.
    (
        "pub in a stream",
        lambda d: _s(d, 0, 1).update(pub="tcp://127.0.0.1:7100"),
        "(b): pub belongs to the shard (one process serves all its streams): move it to the "
        "[[shards]] table",
    ),
    ("device in a stream", lambda d: _s(d, 0, 0).update(device="cuda:1"), "device belongs to"),
    ("source in a shard", lambda d: _s(d, 0).update(source=SYN), "source belongs to a stream"),
    ("id in defaults", lambda d: d["defaults"].update(stream_id="x"), "stream_id is not a default"),
    (
        "both formats",
        lambda d: d.update(streams=[stream("z", pub="tcp://127.0.0.1:7200", control="off")]),
        "give either [[shards]] (one process per GPU, its streams inside) or top-level "
        "[[streams]] (the older one process per stream), not both",
    ),
]


@pytest.mark.parametrize(("change", "expect"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_launch_file_mistakes_are_one_clear_error(
    change: Callable[[dict[str, Any]], None], expect: str
) -> None:
    parse_launch(good(), "site.toml")  # the base is fine
    with pytest.raises(LaunchError) as info:
        parse_launch(with_change(change), "site.toml")
    message = str(info.value)
    assert expect in message and message.startswith("site.toml") and "\n" not in message


def test_shards_group_streams_and_defaults_reach_every_shard() -> None:
    config = parse_launch(good(), "site.toml")
    assert [s.shard_id for s in config.shards] == ["gpu0", "gpu1"]
    assert [s.stream_id for s in config.streams] == ["a", "b", "c"]
    gpu0, gpu1 = config.shards
    assert gpu0.stream_ids == ("a", "b") and gpu0.device == "cuda:0"
    assert gpu0.control is None and gpu1.control == "tcp://127.0.0.1:7003"
    assert gpu0.values["image_size"] == gpu1.values["image_size"] == 256
    assert [s.shard_id for s in config.streams] == ["gpu0", "gpu0", "gpu1"]
    # Without shard_id a shard is named by its place.
    data = with_change(lambda d: [s.pop("shard_id") for s in d["shards"]])
    assert [s.shard_id for s in parse_launch(data, "x").shards] == ["shard0", "shard1"]


def test_old_one_process_per_stream_files_still_read() -> None:
    old = {
        "defaults": {"image_size": 256, "prompts": [{"id": 3, "box": [0, 0, 9, 9]}]},
        "streams": [
            {"stream_id": "a", "source": SYN, "pub": "tcp://127.0.0.1:7001", "control": "off"},
            {
                "stream_id": "b",
                "source": SYN,
                "pub": "tcp://127.0.0.1:7002",
                "control": "tcp://127.0.0.1:7003",
                "policy": "all",
                "restart": "never",
            },
        ],
    }
    config = parse_launch(old, "old.toml")
    assert [(s.shard_id, s.stream_ids) for s in config.shards] == [("a", ("a",)), ("b", ("b",))]
    b = config.shard("b")
    assert b.restart == "never" and b.pub == "tcp://127.0.0.1:7002"
    assert b.values["policy"] == "all"
    assert node_table(b)["prompts"] == [{"id": 3, "box": [0, 0, 9, 9]}]
    old["streams"][1]["stream_id"] = "a"
    with pytest.raises(LaunchError, match=r"stream id 'a' is used twice \(streams\[0\] and "):
        parse_launch(old, "old.toml")


def test_cli_reports_a_bad_launch_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(toml_of(with_change(lambda d: _s(d, 1, 0).update(stream_id="a"))))
    out = subprocess.run([*LAUNCH, str(path)], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 2 and "Traceback" not in out.stderr  # a usage error
    assert out.stderr.strip().splitlines() == [
        f"sam2long-stream: error: {path}: stream id 'a' is used twice "
        "(shards[0] streams[0] and shards[1] streams[0])"
    ]
    flag = subprocess.run(
        [*LAUNCH, str(path), "--bogus"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert flag.returncode == 2 and flag.stderr.strip().splitlines() == [
        "sam2long-stream: error: unrecognized arguments: --bogus "
        "(see sam2long-stream launch --help)"
    ]


def test_node_file_round_trips_through_the_node_reader(tmp_path: Path) -> None:
    """What the launcher writes is, read by `settings.parse_node_table`, the node file
    the shard table means: every option, each stream's own options and prompts."""
    data = good()
    gpu0 = data["shards"][0]
    gpu0.update(
        model="sam2.1_hiera_t",
        pathways=2,
        http="127.0.0.1:7100",
        max_wait=0,
        policy="all",  # a stream default
        prompts=[{"id": 5, "box": [0, 0, 10, 10]}],  # for streams without their own
        args=["--lag", "2"],
    )
    b = gpu0["streams"][1]
    b.update(source='rtsp://user:p"w@cam.local/x\u00e9', max_frames=10, realtime=False)
    b["prompts"].append({"id": 2, "points": [[3, 4], [5, 6]], "labels": [1, 0]})
    spec = parse_launch(data, "site.toml").shard("gpu0")
    text = node_toml(spec, "site.toml")
    path = tmp_path / "gpu0.toml"
    path.write_text(text)
    assert tomllib.loads(text) == node_table(spec)
    expected = settings.NodeFile(
        values={
            "image_size": 256,
            "device": "cuda:0",
            "pub": "tcp://127.0.0.1:7001",
            "control": None,
            "model": "sam2.1_hiera_t",
            "pathways": 2,
            "http": "127.0.0.1:7100",
            "max_wait": 0.0,
            "policy": "all",
        },
        prompts={5: Prompt(box=(0.0, 0.0, 10.0, 10.0))},
        sources=(),
        streams=(
            ({"stream_id": "a", "source": SYN}, None),
            (
                {
                    "stream_id": "b",
                    "max_frames": 10,
                    "realtime": False,
                    "source": 'rtsp://user:p"w@cam.local/x\u00e9',
                },
                {
                    1: Prompt(box=(1.0, 2.0, 30.0, 40.0)),
                    2: Prompt(points=[(3.0, 4.0), (5.0, 6.0)], labels=[1, 0]),
                },
            ),
        ),
    )
    assert settings.read_toml(str(path)) == expected  # the reader `run --config` uses
    assert settings.parse_node_table(tomllib.loads(text), "x") == expected
    argv = node_argv(spec, str(path))
    assert argv[1:] == ["-m", "sam2long_stream.cli", "run", "--config", str(path), "--lag", "2"]
    wrapped = parse_launch(
        with_change(lambda d: _s(d, 1).update(command=["numactl", "--cpunodebind=1", "s2l"])), "x"
    ).shard("gpu1")
    assert node_argv(wrapped, "f.toml") == [
        "numactl", "--cpunodebind=1", "s2l", "run", "--config", "f.toml"
    ]  # fmt: skip


def test_zones_in_shard_and_stream_tables_reach_the_node(tmp_path: Path) -> None:
    """[[shards.zones]] are the zones of the shard's streams without their own;
    [[shards.streams.zones]] a stream's own: the node file carries both, and the node
    builds them; a bad zone is one line naming its place."""
    left = {"name": "left", "polygon": [[0, 0], [64, 0], [64, 96], [0, 96]]}
    door = {"name": "door", "polygon": [[10, 10], [30, 10], [20, 40]]}
    data = good()
    gpu0 = data["shards"][0]
    gpu0["zones"] = [left]
    gpu0["streams"][1]["zones"] = [door]
    spec = parse_launch(data, "site.toml").shard("gpu0")
    path = tmp_path / "gpu0.toml"
    path.write_text(node_toml(spec, "site.toml"))
    config = run_config(build_parser().parse_args(["run", "--config", str(path)]))
    zones = {s.stream_id: [z.as_dict() for z in s.zones] for s in config.streams}
    assert zones["a"] == [Zone("left", tuple(map(tuple, left["polygon"]))).as_dict()]
    assert zones["b"] == [Zone("door", tuple(map(tuple, door["polygon"]))).as_dict()]
    _s(data, 0, 1)["zones"] = [door, {"name": "door", "polygon": [[0, 0], [1, 0], [0, 1]]}]
    with pytest.raises(LaunchError, match=r"shards\[0\] \(gpu0\) streams\[1\] \(b\): .*twice"):
        parse_launch(data, "site.toml")
    _s(data, 0, 1)["zones"] = [{"name": "flat", "polygon": [[0, 0], [5, 5]]}]
    with pytest.raises(LaunchError, match=r"streams\[1\] \(b\): zone #1"):
        parse_launch(data, "site.toml")


def test_format_table_and_the_address_helpers() -> None:
    rows = [
        {"stream_id": "cam0", "shard": "gpu0", "state": "running", "fps": 4.94,
         "latency_ms": 151.2, "dropped_frames": 3, "restarts": 1, "pid": 42, "device": "cuda:0"},
        {"stream_id": "far", "shard": None, "state": "backoff 4s", "fps": None,
         "latency_ms": None, "dropped_frames": None, "restarts": None, "pid": None,
         "device": None},
    ]  # fmt: skip
    lines = format_table(rows).splitlines()
    table = parse_table(lines)
    assert table["cam0"]["LATENCY"] == "151 ms" and table["far"]["STATE"] == "backoff 4s"
    assert lines[0].split() == [
        "STREAM", "SHARD", "STATE", "FPS", "LATENCY", "DROPPED", "RESTARTS", "PID", "DEVICE"
    ]  # fmt: skip
    assert lines[1].split() == [
        "cam0", "gpu0", "running", "4.9", "151", "ms", "3", "1", "42", "cuda:0"
    ]  # fmt: skip
    assert lines[2].split() == ["far", "-", "backoff", "4s", "-", "-", "-", "-", "-", "-"]
    assert security.connect_address("tcp://0.0.0.0:5556") == "tcp://127.0.0.1:5556"
    assert security.connect_address("tcp://*:5556") == "tcp://127.0.0.1:5556"
    assert security.connect_address("tcp://10.1.2.3:5556") == "tcp://10.1.2.3:5556"
    assert security.fixed_endpoint("ipc:///tmp/x") == (("ipc", "/tmp/x"), None)
    with pytest.raises(ValueError, match="fixed port"):
        security.fixed_endpoint("tcp://127.0.0.1:0")
    with pytest.raises(ValueError, match="fixed port"):
        security.fixed_endpoint("inproc://x")
    assert security.http_endpoint("[::1]:8080") == (("tcp", "8080"), "::1")
    with pytest.raises(ValueError, match="fixed port"):
        security.http_endpoint("127.0.0.1:0")
    assert not security.reachable_from_outside("127.0.0.1")
    assert not security.reachable_from_outside(None)  # ipc://
    assert security.reachable_from_outside("0.0.0.0")
    assert security.reachable_from_outside("no-such-host.invalid")  # checked elsewhere, maybe


def test_launch_subcommand_plugs_into_the_cli_parser() -> None:
    """What the one line in cli.build_parser does: `sam2long-stream launch FILE`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "launch" not in sub.choices:  # not wired into cli.py
        add_parser(sub)
    args = parser.parse_args(["launch", "site.toml", "--no-table", "--http", "127.0.0.1:1"])
    assert args.func is cmd_launch and args.launch_file == "site.toml"
    assert args.table is False and args.http == "127.0.0.1:1" and args.check is False


def test_http_flag_obeys_the_loopback_rule() -> None:
    config = parse_launch(good(), "site.toml")
    with pytest.raises(LaunchError, match="reachable from other hosts"):
        Launcher(config, http="0.0.0.0:8080")
    allowed = with_change(lambda d: d.update(launcher={"allow_remote": True}))
    assert Launcher(parse_launch(allowed, "site.toml"), http="0.0.0.0:8080").opts["http"]


def test_check_masks_secrets_in_sources(tmp_path: Path) -> None:
    data = with_change(lambda d: _s(d, 0, 0).update(source=RTSP_SECRET))
    _s(data, 1, 0)["source"] = WHIP_SECRET
    path = tmp_path / "site.toml"
    path.write_text(toml_of(data))
    out = subprocess.run(
        [*LAUNCH, str(path), "--check"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert out.returncode == 0, out.stderr
    assert "a: rtsp://viewer:***@127.0.0.1:9/live" in out.stdout
    assert "c: whip://127.0.0.1:9/whip/door?token=***" in out.stdout
    assert not any(s in out.stdout + out.stderr for s in SECRETS)


# --------------------------------------------------------------------------- proxy


def _status(pub: zmq.Socket, sid: str, n: int) -> None:
    pub.send_multipart(wire.encode_status(sid, "running", fps=float(n)))


def _collect(sub: zmq.Socket, pubs: dict[str, zmq.Socket], timeout: float = 5.0) -> set[str]:
    """Publish on every upstream until ``sub`` has a message from each (slow joiner)."""
    got: set[str] = set()
    deadline = time.monotonic() + timeout
    n = 0
    while got != set(pubs) and time.monotonic() < deadline:
        for sid, pub in pubs.items():
            _status(pub, sid, n)
        n += 1
        while sub.poll(50):
            topic = sub.recv_multipart()[0].decode()
            got.add(topic.split("/", 1)[1])
    return got


@pytest.fixture
def upstreams() -> Iterator[dict[str, zmq.Socket]]:
    ctx = zmq.Context()
    pubs = {}
    for sid in ("left", "right"):
        sock = ctx.socket(zmq.XPUB)  # what a node's Publisher binds
        sock.bind("tcp://127.0.0.1:*")
        pubs[sid] = sock
    yield pubs
    for sock in pubs.values():
        sock.close(linger=0)
    ctx.term()


def test_proxy_forwards_every_upstream_to_one_address(upstreams: dict[str, zmq.Socket]) -> None:
    addrs = [s.getsockopt_string(zmq.LAST_ENDPOINT) for s in upstreams.values()]
    proxy = Proxy("tcp://127.0.0.1:*", addrs)
    endpoint = proxy.start()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"status/")
        sub.connect(endpoint)
        assert proxy.alive
        # The subscription travels upstream, so a node knows what is wanted (and skips
        # encoding masks nobody subscribed to).
        for pub in upstreams.values():
            assert pub.poll(5000) and pub.recv() == b"\x01status/"
        assert _collect(sub, upstreams) == {"left", "right"}
        with pytest.raises(OSError, match="cannot bind"):
            Proxy(endpoint, addrs).start()  # the port is taken: one clear error
    finally:
        sub.close(linger=0)
        ctx.term()
        proxy.stop()
    assert not proxy.alive


def test_proxy_curve_admits_only_keyed_clients(
    upstreams: dict[str, zmq.Socket], tmp_path: Path
) -> None:
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    server_public, server_secret = security.create_keys(keys, "server")
    _, allowed_secret = security.create_keys(keys, "allowed")
    _, stranger_secret = security.create_keys(keys, "stranger")
    clients.mkdir()
    os.replace(keys / "allowed.key", clients / "allowed.key")
    server_key = security.load_public(server_public)
    addrs = [s.getsockopt_string(zmq.LAST_ENDPOINT) for s in upstreams.values()]
    proxy = Proxy(
        "tcp://127.0.0.1:*", addrs, curve_secret=str(server_secret), curve_clients=str(clients)
    )
    endpoint = proxy.start()
    ctx = zmq.Context()
    socks = []

    def subscriber(secret_file: Path | None) -> zmq.Socket:
        sock = ctx.socket(zmq.SUB)
        if secret_file is not None:
            public, secret = zmq.auth.load_certificate(secret_file)
            sock.curve_publickey, sock.curve_secretkey = public, secret
            sock.curve_serverkey = server_key
        sock.setsockopt(zmq.SUBSCRIBE, b"status/")
        sock.connect(endpoint)
        socks.append(sock)
        return sock

    try:
        allowed = subscriber(allowed_secret)
        stranger = subscriber(stranger_secret)
        plain = subscriber(None)
        assert _collect(allowed, upstreams) == {"left", "right"}
        for n in range(5):
            _status(upstreams["left"], "left", n)
        assert not stranger.poll(300) and not plain.poll(10)
    finally:
        for sock in socks:
            sock.close(linger=0)
        ctx.term()
        proxy.stop()


def test_proxy_refuses_a_world_readable_or_public_key_as_its_secret(tmp_path: Path) -> None:
    """The proxy reads keys with security's checks (the node's own): a public key file is
    refused with a hint, and an empty clients directory is refused at start."""
    public, secret = security.create_keys(tmp_path / "keys", "proxy")
    with pytest.raises(ValueError, match="holds no secret key"):
        Proxy("tcp://127.0.0.1:*", curve_secret=str(public))
    (tmp_path / "empty").mkdir()
    proxy = Proxy(
        "tcp://127.0.0.1:*", curve_secret=str(secret), curve_clients=str(tmp_path / "empty")
    )
    with pytest.raises(ValueError, match=r"holds no public \.key file"):
        proxy.start()
    proxy.stop()


def test_proxy_reads_curve_upstreams_with_its_client_key(tmp_path: Path) -> None:
    """A shard with curve_secret/curve_clients is a CURVE server: the proxy (and the
    launcher's status socket) connect to it with the launcher's key, plain ones without."""
    keys = tmp_path / "keys"
    _, node_secret = security.create_keys(keys, "node")
    launcher_public, launcher_secret = security.create_keys(keys, "launcher")
    clients = tmp_path / "clients"
    clients.mkdir()
    os.replace(launcher_public, clients / "launcher.key")
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(clients))
    secure = ctx.socket(zmq.XPUB)
    security.apply_server(secure, security.load_secret(node_secret))
    secure.bind("tcp://127.0.0.1:*")
    plain = ctx.socket(zmq.XPUB)
    plain.bind("tcp://127.0.0.1:*")
    ups = [
        Upstream(plain.getsockopt_string(zmq.LAST_ENDPOINT)),
        Upstream(secure.getsockopt_string(zmq.LAST_ENDPOINT), security.load_public(node_secret)),
    ]
    proxy = Proxy("tcp://127.0.0.1:*", ups, client_keys=security.load_secret(launcher_secret))
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"status/")
        sub.connect(proxy.start())
        assert _collect(sub, {"plain": plain, "secure": secure}) == {"plain", "secure"}
    finally:
        sub.close(linger=0)
        proxy.stop()
        for sock in (secure, plain):
            sock.close(linger=0)
        auth.stop()
        ctx.term()
    with zmq.Context() as other, other.socket(zmq.SUB) as lone:
        with pytest.raises(ValueError, match="a client key is needed"):
            connect_upstreams(lone, ups, None)
        lone.close(linger=0)


# --------------------------------------------------------------------------- processes


class Run:
    """One launcher process; its stdout and stderr are drained into lists."""

    def __init__(self, launch_file: Path, *args: str) -> None:
        self.http_port = free_port()
        self.proc = subprocess.Popen(
            [*LAUNCH, str(launch_file), "--http", f"127.0.0.1:{self.http_port}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=REPO_ROOT,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._pumps = []
        for pipe, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            pump = threading.Thread(target=self._pump, args=(pipe, sink), daemon=True)
            pump.start()
            self._pumps.append(pump)

    @staticmethod
    def _pump(pipe: Any, sink: list[str]) -> None:
        for line in pipe:
            sink.append(line.rstrip("\n"))

    def get(self, path: str) -> tuple[int, str] | None:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None

    def health(self) -> dict[str, Any] | None:
        got = self.get("/healthz")
        return None if got is None else json.loads(got[1])

    def rows(self) -> dict[str, dict[str, Any]]:
        body = self.health()
        return {} if body is None else {r["stream_id"]: r for r in body["streams"]}

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            assert self.proc.poll() is None, f"launcher died: {self.log()}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {self.rows()}\n{self.log()}")

    def log(self) -> str:
        return "\n".join(self.err[-40:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"launcher did not stop in {timeout} s: {self.log()}") from None
        for pump in self._pumps:
            pump.join(10)
        return code


def parse_table(lines: list[str]) -> dict[str, dict[str, str]]:
    """The launcher's table (header line first) as {stream: {column: text}}."""
    header = lines[0]
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    return {
        line[: starts[1]].strip(): {
            n: line[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)
        }
        for line in lines[1:]
    }


def last_table(lines: list[str], count: int) -> dict[str, dict[str, str]]:
    """The last table printed: its header line and ``count`` rows."""
    lines = [line for line in lines if line.strip()]
    return parse_table(lines[-(count + 1) :])


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def launched() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:  # never leave a launcher (and its shards) behind a failed test
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


@pytest.fixture
def fake_shard(tmp_path: Path) -> list[str]:
    """The command that runs the stand-in shard (a shard's `command`)."""
    path = tmp_path / "fake_shard.py"
    path.write_text(FAKE_SHARD)
    return [sys.executable, str(path)]


def metrics_of(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def test_one_row_per_stream_restart_per_shard_one_address_and_no_secrets(
    tmp_path: Path, fake_shard: list[str], launched: list[Run]
) -> None:
    """Two shards (two streams and one) behind one proxy address: the table, /healthz and
    /metrics have a row per stream with its shard; killing a shard restarts it (both
    its streams count the restart), the other shard is untouched; no source secret
    reaches the table, the logs, the log files, /healthz or /metrics, while the node
    files (for the nodes alone) hold them, mode 0600."""
    proxy = f"tcp://127.0.0.1:{free_port()}"
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    site = {
        "launcher": {
            "restart_delay_s": 0.5,
            "restart_max_delay_s": 2.0,
            "table_interval_s": 0.5,
            "run_dir": str(run_dir),
            "log_dir": str(log_dir),
        },
        "proxy": {"bind": proxy},
        "defaults": {"command": fake_shard},
        "shards": [
            shard("gpu0", stream("door", source=RTSP_SECRET), stream("yard"), device="cuda:0"),
            shard(
                "gpu1", stream("gate", source=WHIP_SECRET), device="cuda:1", env={"FAKE_ERROR": "1"}
            ),
        ],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    ids = {"door", "yard", "gate"}
    run = Run(path)
    launched.append(run)
    with Subscriber(proxy, topics=("status/",)) as sub:  # ONE subscriber, ONE address
        first = run.wait_for(
            "every stream reporting",
            lambda: (r := run.rows()) and all(r[s]["status_age_s"] is not None for s in ids) and r,
            timeout=60,
        )
        assert {sid: (r["shard"], r["device"]) for sid, r in first.items()} == {
            "door": ("gpu0", "cuda:0"),
            "yard": ("gpu0", "cuda:0"),
            "gate": ("gpu1", "cuda:1"),
        }
        assert first["door"]["pid"] == first["yard"]["pid"] != first["gate"]["pid"]
        assert first["yard"]["state"] == "running" and first["yard"]["fps"] == 3.0
        assert first["gate"]["state"] == "error"
        assert first["gate"]["error"] == (
            "cannot open whip://127.0.0.1:9/whip/door?token=*** (401 Unauthorized)"
        )
        assert first["door"]["source"] == "rtsp://viewer:***@127.0.0.1:9/live"
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while seen != ids and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=0.5)
            if msg is not None:
                seen.add(msg.stream_id)
        assert seen == ids

    status, text = run.get("/metrics") or (0, "")
    assert status == 200
    metrics = metrics_of(text)
    assert ({"stream": "yard", "shard": "gpu0"}, 3.0) in metrics["sam2long_launch_stream_fps"]
    running = dict((m["stream"], v) for m, v in metrics["sam2long_launch_stream_running"])
    assert running == {"door": 1.0, "yard": 1.0, "gate": 0.0}
    info = {m["stream"]: m for m, _ in metrics["sam2long_launch_stream_info"]}
    assert info["door"]["source"] == "rtsp://viewer:***@127.0.0.1:9/live"
    assert info["gate"]["device"] == "cuda:1"
    assert metrics["sam2long_launch_ready"] == [({}, 1.0)]
    assert run.get("/readyz") is not None and run.get("/readyz")[0] == 200

    # Kill the two-stream shard: one restart, counted on both its rows; gpu1 untouched.
    pid0, pid1 = first["door"]["pid"], first["gate"]["pid"]
    os.kill(pid0, signal.SIGKILL)
    after = run.wait_for(
        "gpu0 restarted and reporting",
        lambda: (
            (r := run.rows())
            and r["door"]["restarts"] == 1
            and r["door"]["pid"] not in (None, pid0)
            and r["door"]["status_age_s"] is not None
            and r
        ),
        timeout=60,
    )
    assert after["yard"]["restarts"] == 1 and after["yard"]["pid"] == after["door"]["pid"]
    assert after["gate"]["restarts"] == 0 and after["gate"]["pid"] == pid1
    assert _gone(pid0)
    restarts = metrics_of(run.get("/metrics")[1])["sam2long_launch_shard_restarts_total"]
    assert sorted((m["shard"], v) for m, v in restarts) == [("gpu0", 1.0), ("gpu1", 0.0)]

    # The node files: for the node only, 0600 in a 0700 directory, sources intact.
    for name in ("gpu0", "gpu1"):
        node_file = run_dir / f"{name}.toml"
        assert stat.S_IMODE(node_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert RTSP_SECRET in (run_dir / "gpu0.toml").read_text()
    node = settings.read_toml(str(run_dir / "gpu0.toml"))
    assert [v["stream_id"] for v, _ in node.streams] == ["door", "yard"]

    health = run.get("/healthz")
    assert run.stop() == 0, run.log()
    assert all(_gone(p) for p in (pid0, pid1, after["door"]["pid"]))
    final = last_table(run.out, 3)
    assert set(final) == ids and all(row["STATE"] == "stopped" for row in final.values())
    assert final["door"]["SHARD"] == "gpu0" and final["door"]["RESTARTS"] == "1"
    assert final["gate"]["RESTARTS"] == "0"
    log = "\n".join(run.err)
    assert "gpu0: node exited (signal 9)" in log and "restarting in 0.5 s" in log
    assert "started node pid" in log and "for door, yard on cuda:0" in log
    # What people see: the node's own output line went to its log file, masked.
    logs = {p.name: p.read_text() for p in log_dir.iterdir()}
    assert set(logs) == {"gpu0.log", "gpu1.log"}
    assert "fake shard up: rtsp://viewer:***@127.0.0.1:9/live" in logs["gpu0.log"]
    assert "whip://127.0.0.1:9/whip/door?token=***" in logs["gpu1.log"]
    shown = "\n".join([*run.out, *run.err, text, json.dumps(health), *logs.values()])
    assert not any(secret in shown for secret in SECRETS)


def test_a_shard_whose_streams_all_went_silent_is_killed_and_restarted(
    tmp_path: Path, fake_shard: list[str], launched: list[Run]
) -> None:
    site = {
        "launcher": {"hang_timeout_s": 1.0, "restart_delay_s": 0.2},
        "shards": [
            shard(
                "hung",
                stream("a"),
                stream("b"),
                command=fake_shard,
                env={"FAKE_SILENT_AFTER": "1.0"},
            ),
        ],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path, "--no-table")
    launched.append(run)
    first = run.wait_for(
        "both streams reporting",
        lambda: (r := run.rows()) and all(r[s]["status_age_s"] is not None for s in "ab") and r,
        timeout=60,
    )
    run.wait_for(
        "the silent shard killed and restarted",
        lambda: (
            (r := run.rows()) and r["a"]["restarts"] >= 1 and r["a"]["pid"] != first["a"]["pid"]
        ),
        timeout=60,
    )
    assert "hung: no status from any of its streams for" in run.log()
    assert "killing the hung node" in run.log()
    assert run.stop() == 0
    assert run.out == []  # --no-table: nothing on stdout


def test_backoff_doubles_up_to_the_cap_and_never_gives_up(
    tmp_path: Path, fake_shard: list[str], launched: list[Run]
) -> None:
    site = {
        "launcher": {"restart_delay_s": 0.2, "restart_max_delay_s": 0.8},
        "shards": [shard("broken", stream("x"), command=fake_shard, env={"FAKE_EXIT": "3"})],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path, "--no-table")
    launched.append(run)
    delays = run.wait_for(
        "five restarts",
        lambda: len(d := re.findall(r"restarting in ([\d.]+) s", "\n".join(run.err))) >= 5 and d,
        timeout=90,
    )
    assert [float(d) for d in delays[:5]] == [0.2, 0.4, 0.8, 0.8, 0.8]
    assert "broken: node exited (code 3)" in run.log()
    assert run.rows()["x"]["restarts"] >= 4
    assert run.stop() == 0


def test_restart_never_reports_the_failure_and_exits_1(
    tmp_path: Path, fake_shard: list[str]
) -> None:
    site = {
        "shards": [
            shard("once", stream("x"), command=fake_shard, restart="never", env={"FAKE_EXIT": "1"})
        ]
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    out = subprocess.run([*LAUNCH, str(path)], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 1, out.stderr
    assert "once: node exited (code 1)" in out.stderr and "not restarting" in out.stderr
    last = out.stdout.strip().splitlines()[-1].split()
    assert last[:4] == ["x", "once", "failed", "(1)"]


def test_a_shard_command_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    site = {
        "shards": [
            shard("nope", stream("x"), command=["/nonexistent/sam2long-stream"], restart="never")
        ]
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    out = subprocess.run(
        [*LAUNCH, str(path), "--no-table"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert out.returncode == 1, out.stderr
    assert "[nope] cannot run /nonexistent/sam2long-stream: No such file or directory" in out.stderr
    assert "nope: node exited (code 127)" in out.stderr and "Traceback" not in out.stderr


def test_a_fan_in_shows_the_streams_of_its_upstreams(
    tmp_path: Path, fake_shard: list[str], launched: list[Run]
) -> None:
    """A launcher with no shards forwards another launcher's proxy: one address for
    many machines, and the remote streams appear in its table without a shard."""
    shard_proxy = f"tcp://127.0.0.1:{free_port()}"
    fanin_proxy = f"tcp://127.0.0.1:{free_port()}"
    machine = {
        "proxy": {"bind": shard_proxy},
        "shards": [shard("gpu0", stream("a"), stream("b"), command=fake_shard)],
    }
    fanin = {"proxy": {"bind": fanin_proxy, "upstreams": [shard_proxy]}}
    (tmp_path / "machine.toml").write_text(toml_of(machine))
    (tmp_path / "fanin.toml").write_text(toml_of(fanin))
    run_m = Run(tmp_path / "machine.toml", "--no-table")
    launched.append(run_m)
    run_f = Run(tmp_path / "fanin.toml", "--no-table")
    launched.append(run_f)
    rows = run_f.wait_for(
        "the fan-in sees both streams",
        lambda: (r := run_f.rows()) and set(r) == {"a", "b"} and r,
        timeout=60,
    )
    assert rows["a"]["shard"] is None and rows["a"]["state"] == "running"
    with Subscriber(fanin_proxy, topics=("status/",)) as sub:
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while seen != {"a", "b"} and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=0.5)
            if msg is not None:
                seen.add(msg.stream_id)
    assert seen == {"a", "b"}
    assert run_f.stop() == 0 and run_m.stop() == 0


# --------------------------------------------------------------------------- real nodes
# These run `sam2long-stream run --config shard.toml` with [[streams]]: they need the
# multi-stream node.


@pytest.mark.rtsp
def test_two_real_shards_restart_one_address_and_clean_stop(
    tmp_path: Path, rtsp_camera_factory: Callable[..., Any], launched: list[Run]
) -> None:
    camera = rtsp_camera_factory(width=128, height=96, fps=3)
    proxy = f"tcp://127.0.0.1:{free_port()}"
    box = [{"id": 1, "box": [10, 10, 60, 60]}]
    site = {
        "launcher": {"restart_delay_s": 0.5, "restart_max_delay_s": 2.0, "stop_timeout_s": 15.0},
        "proxy": {"bind": proxy},
        "defaults": SMALL,
        "shards": [
            shard("s0", stream("cam-a", prompts=box), stream("cam-b", prompts=box)),
            shard("s1", stream("cam-rtsp", source=camera.url, prompts=box)),
        ],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    ids = {"cam-a", "cam-b", "cam-rtsp"}

    run = Run(path)
    launched.append(run)
    with Subscriber(proxy, topics=("masks/",)) as sub:  # ONE subscriber, ONE address
        first = run.wait_for(
            "every stream running",
            lambda: (r := run.rows()) and all(r[s]["state"] == "running" for s in ids) and r,
            timeout=120,
        )
        pids = {sid: first[sid]["pid"] for sid in ids}
        assert pids["cam-a"] == pids["cam-b"] != pids["cam-rtsp"]  # one process per shard
        assert all(psutil.pid_exists(p) for p in pids.values())

        seen: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while set(seen) != ids and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=0.5)
            if msg is not None:
                seen[msg.stream_id] = seen.get(msg.stream_id, 0) + 1
                assert msg.objects and msg.objects[0]["id"] == 1
        assert set(seen) == ids, seen

        # Crash the two-stream shard: the launcher restarts it, both streams publish again.
        os.kill(pids["cam-a"], signal.SIGKILL)
        killed_ns = time.time_ns()
        after = run.wait_for(
            "the killed shard restarted and running",
            lambda: (
                (r := run.rows())
                and all(r[s]["restarts"] == 1 for s in ("cam-a", "cam-b"))
                and r["cam-a"]["pid"] not in (None, pids["cam-a"])
                and all(r[s]["state"] == "running" for s in ("cam-a", "cam-b"))
                and r
            ),
            timeout=120,
        )
        assert _gone(pids["cam-a"])
        assert after["cam-rtsp"]["pid"] == pids["cam-rtsp"] and after["cam-rtsp"]["restarts"] == 0
        resumed: set[str] = set()
        deadline = time.monotonic() + 60
        while resumed != {"cam-a", "cam-b"} and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=0.5)
            if msg is not None and msg.capture_time_ns > killed_ns:
                resumed.add(msg.stream_id)
        assert {"cam-a", "cam-b"} <= resumed, "the restarted shard's masks never came through"
    all_pids = [*pids.values(), after["cam-a"]["pid"]]

    assert run.stop(signal.SIGTERM) == 0, run.log()
    assert all(_gone(p) for p in all_pids), [p for p in all_pids if not _gone(p)]
    # The live table went to stdout, ending with every shard stopped by the launcher.
    final = last_table(run.out, 3)
    assert set(final) == ids and all(row["STATE"] == "stopped" for row in final.values())
    assert final["cam-b"]["RESTARTS"] == "1" and final["cam-rtsp"]["RESTARTS"] == "0"
    assert final["cam-b"]["SHARD"] == "s0"
    log = "\n".join(run.err)
    assert "s0: node exited (signal 9)" in log and "restarting in 0.5 s" in log


def test_a_real_node_that_cannot_start_backs_off_with_its_own_words(
    tmp_path: Path, launched: list[Run]
) -> None:
    # A checkpoint that does not exist makes `run` exit 1 at once (before torch loads).
    site = {
        "launcher": {"restart_delay_s": 0.2, "restart_max_delay_s": 0.8},
        "shards": [shard("broken", stream("x"), stream("y"), checkpoint="/nonexistent/sam2.pt")],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path, "--no-table")
    launched.append(run)
    run.wait_for(
        "three restarts",
        lambda: len(re.findall(r"restarting in ([\d.]+) s", "\n".join(run.err))) >= 3,
        timeout=90,
    )
    assert "checkpoint not found: /nonexistent/sam2.pt" in run.log()  # the node's own words
    assert run.stop() == 0


def test_secrets_never_leave_a_real_node_through_the_launcher(
    tmp_path: Path, launched: list[Run]
) -> None:
    """A real shard with a password in an RTSP source (nothing listens there) and a
    token in a WHIP source: whatever the node says about them, the launcher shows
    them masked."""
    log_dir, run_dir = tmp_path / "logs", tmp_path / "run"
    site = {
        "launcher": {
            "restart_delay_s": 0.5,
            "log_dir": str(log_dir),
            "run_dir": str(run_dir),
            "table_interval_s": 0.5,
        },
        "defaults": SMALL,
        "shards": [
            shard(
                "s0",
                stream("door", source=RTSP_SECRET),
                stream("gate", source=f"whip://127.0.0.1:{free_port()}/whip/g?token=T0KEN-42"),
            )
        ],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path)
    launched.append(run)
    run.wait_for(
        "a status from the node, or a restart",
        lambda: (
            (r := run.rows()) and (r["door"]["status_age_s"] is not None or r["door"]["restarts"])
        ),
        timeout=180,
    )
    metrics = run.get("/metrics")
    health = run.get("/healthz")
    node_file = (run_dir / "s0.toml").read_text()
    assert run.stop() == 0
    assert RTSP_SECRET in node_file and "token=T0KEN-42" in node_file  # the node had them
    assert "rtsp://viewer:***@127.0.0.1:9/live" in str(health) + str(metrics)
    logs = "\n".join(p.read_text() for p in log_dir.iterdir())
    assert logs.strip(), "the node said nothing"
    shown = "\n".join([*run.out, *run.err, str(metrics), str(health), logs])
    assert not any(secret in shown for secret in SECRETS)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_nodes_die_with_a_killed_launcher(tmp_path: Path, launched: list[Run]) -> None:
    site = {"defaults": SMALL, "shards": [shard("orphan", stream("a"), stream("b"))]}
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path, "--no-table")
    launched.append(run)
    pid = run.wait_for(
        "the node running",
        lambda: (r := run.rows()) and r["a"]["state"] == "running" and r["a"]["pid"],
        timeout=90,
    )
    node = psutil.Process(pid)
    assert node.ppid() == run.proc.pid
    assert "sam2long_stream.cli" in node.cmdline() and "run" in node.cmdline()
    run.proc.kill()  # no chance to forward anything
    run.proc.wait()
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(pid), "the node outlived its SIGKILLed launcher"
