"""`sam2long-stream launch`: launch-file validation, the XSUB/XPUB proxy on real sockets,
and the launcher running real node processes (CPU, random weights, 128 px images):
restart after SIGKILL, one subscriber address for every stream, clean SIGTERM with no
orphans, backoff, and nodes dying with a SIGKILLed launcher."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
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
from zmq.auth.thread import ThreadAuthenticator

from sam2long_stream import settings
from sam2long_stream.cli import build_parser
from sam2long_stream.launch import (
    Launcher,
    LaunchError,
    Proxy,
    Upstream,
    add_parser,
    cmd_launch,
    connect_address,
    connect_upstreams,
    format_table,
    load_launch_file,
    load_public_key,
    load_secret_key,
    node_argv,
    node_toml,
    parse_launch,
)
from sam2long_stream.transport import wire
from sam2long_stream.transport.subscriber import Subscriber
from tests.conftest import REPO_ROOT, free_port

LAUNCH = [sys.executable, "-m", "sam2long_stream.launch"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SYN = "synthetic://moving-shapes?width=128&height=96&fps=3"
# A small, cheap node: 128 px model input, one pathway, one torch thread.
SMALL = {"image_size": 128, "pathways": 1, "threads": 1, "seed": 0}


def toml_of(data: dict[str, Any]) -> str:
    """Enough TOML for the tests' launch files (tables, arrays of tables, scalars)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    def table(name: str, t: dict[str, Any], array: bool = False) -> list[str]:
        head = f"[[{name}]]" if array else f"[{name}]"
        lines = [head] if name else []
        subs = []
        for k, v in t.items():
            if isinstance(v, dict):
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


def stream(sid: str, **kw: Any) -> dict[str, Any]:
    return {
        "stream_id": sid,
        "source": SYN,
        "pub": f"tcp://127.0.0.1:{free_port()}",
        "control": "off",
        **kw,
    }


# --------------------------------------------------------------------------- validation


def test_example_launch_files_are_valid() -> None:
    files = sorted(
        p for p in (REPO_ROOT / "launch").glob("*.toml") if p.name != "node.example.toml"
    )
    names = {p.name for p in files}
    assert {"one-camera.toml", "four-cameras-one-gpu.toml", "eight-cameras-two-gpus.toml"} <= names
    configs = {p.name: load_launch_file(p) for p in files}
    one = configs["one-camera.toml"]
    assert len(one.streams) == 1 and one.proxy is None
    four = configs["four-cameras-one-gpu.toml"]
    assert [s.device for s in four.streams] == ["cuda:0"] * 4
    assert four.proxy is not None and four.proxy.bind == "tcp://127.0.0.1:5556"
    eight = configs["eight-cameras-two-gpus.toml"]
    devices = [s.device for s in eight.streams]
    assert devices.count("cuda:0") == 4 and devices.count("cuda:1") == 4
    # The CLI says the same, in one line per stream.
    out = subprocess.run(
        [*LAUNCH, str(REPO_ROOT / "launch" / "eight-cameras-two-gpus.toml"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr
    assert "8 streams OK" in out.stdout and out.stdout.count("on cuda:1") == 4


def good() -> dict[str, Any]:
    return {
        "proxy": {"bind": "tcp://127.0.0.1:7000"},
        "defaults": {"image_size": 256},
        "streams": [
            {"stream_id": "a", "source": SYN, "pub": "tcp://127.0.0.1:7001", "control": "off"},
            {
                "stream_id": "b",
                "source": SYN,
                "pub": "tcp://127.0.0.1:7002",
                "control": "tcp://127.0.0.1:7003",
                "prompts": [{"id": 1, "box": [1, 2, 30, 40]}],
            },
        ],
    }


def with_change(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = good()
    fn(data)
    return data


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("top-level key", lambda d: d.update(stream=[]), "unknown key 'stream'"),
    ("stream key", lambda d: d["streams"][0].update(sorce="x"), "(a): unknown key 'sorce'"),
    ("launcher key", lambda d: d.update(launcher={"restart": 1}), "[launcher]: unknown key"),
    ("proxy key", lambda d: d["proxy"].update(port=1), "[proxy]: unknown key 'port'"),
    ("defaults key", lambda d: d["defaults"].update(imagesize=1), "[defaults]: unknown key"),
    (
        "duplicate id",
        lambda d: d["streams"][1].update(stream_id="a"),
        "stream id 'a' is used twice",
    ),
    (
        "duplicate port",
        lambda d: d["streams"][1].update(control="tcp://127.0.0.1:7001"),
        "port 7001 is used twice: stream a pub and stream b control",
    ),
    (
        "proxy port clash",
        lambda d: d["streams"][0].update(pub="tcp://0.0.0.0:7000", allow_remote=True),
        "port 7000 is used twice: the proxy bind and stream a pub",
    ),
    ("wildcard port", lambda d: d["streams"][0].update(pub="tcp://127.0.0.1:*"), "a fixed port"),
    ("missing source", lambda d: d["streams"][0].pop("source"), "(a): source is required"),
    ("missing control", lambda d: d["streams"][0].pop("control"), 'use "off" for none'),
    ("wrong type", lambda d: d["defaults"].update(image_size="256"), "image_size must be an int"),
    ("bad id", lambda d: d["streams"][0].update(stream_id="a/b"), "1-64 characters"),
    ("bad prompt", lambda d: d["streams"][1]["prompts"][0].update(box=[5, 5, 1, 1]), "x0 < x1"),
    ("remote bind", lambda d: d["proxy"].update(bind="tcp://0.0.0.0:7000"), "allow_remote"),
    ("restart", lambda d: d["streams"][0].update(restart="sometimes"), "restart must be one of"),
    ("no streams", lambda d: d.update(streams=[]), "no [[streams]]"),
    ("env", lambda d: d["streams"][0].update(env={"A": 1}), "env must be a table of strings"),
    ("backoff", lambda d: d.update(launcher={"restart_max_delay_s": 0.1}), "restart_max_delay_s"),
    (
        "curve node, no launcher key",
        lambda d: d["streams"][1].update(curve_secret="n.key_secret", curve_clients="c"),
        "stream b runs with CurveZMQ, so the launcher needs its own key",
    ),
    (
        "proxy curve half",
        lambda d: d["proxy"].update(curve_secret="p.key_secret"),
        "curve_secret and curve_clients go together",
    ),
    (
        "remote http",
        lambda d: d["streams"][0].update(http="0.0.0.0:7010"),
        "stream a http binds 0.0.0.0",
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


def test_cli_reports_a_bad_launch_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(toml_of(with_change(lambda d: d["streams"][1].update(stream_id="a"))))
    out = subprocess.run([*LAUNCH, str(path)], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"sam2long-stream: error: {path}: stream id 'a' is used twice (streams[0] and streams[1])"
    ]


def test_node_config_round_trips_through_the_node_reader(tmp_path: Path) -> None:
    data = good()
    data["defaults"].update(model="sam2.1_hiera_t", device="cuda:1", pathways=2)
    data["streams"][1].update(
        source='rtsp://user:p"w@cam.local/x\u00e9', http="127.0.0.1:7100", args=["--lag", "2"]
    )
    data["streams"][1]["prompts"].append({"id": 2, "points": [[3, 4], [5, 6]], "labels": [1, 0]})
    spec = parse_launch(data, "site.toml").streams[1]
    path = tmp_path / "b.toml"
    path.write_text(node_toml(spec, "site.toml"))
    node_file = settings.read_toml(str(path))  # the very reader `run --config` uses
    loaded = {**node_file.values, "source": node_file.sources[0]}
    prompts = node_file.prompts
    assert loaded == {k: v for k, v in spec.node.items() if k != "prompts"}
    assert loaded["device"] == "cuda:1" and loaded["image_size"] == 256
    assert loaded["source"] == 'rtsp://user:p"w@cam.local/x\u00e9'
    assert sorted(prompts) == [1, 2] and prompts[2].labels == [1, 0]
    argv = node_argv(spec, str(path))
    assert argv[-6:] == ["--config", str(path), "--http", "127.0.0.1:7100", "--lag", "2"]
    assert argv[1:5] == ["-m", "sam2long_stream.cli", "run", "--config"]


def test_format_table_and_connect_address() -> None:
    rows = [
        {"stream_id": "cam0", "state": "running", "fps": 4.94, "latency_ms": 151.2,
         "dropped_frames": 3, "restarts": 1, "pid": 42, "device": "cuda:0"},
        {"stream_id": "far", "state": "backoff 4s", "fps": None, "latency_ms": None,
         "dropped_frames": None, "restarts": None, "pid": None, "device": None},
    ]  # fmt: skip
    lines = format_table(rows).splitlines()
    table = parse_table(lines)
    assert table["cam0"]["LATENCY"] == "151 ms" and table["far"]["STATE"] == "backoff 4s"
    assert lines[0].split() == [
        "STREAM", "STATE", "FPS", "LATENCY", "DROPPED", "RESTARTS", "PID", "DEVICE"
    ]  # fmt: skip
    assert lines[1].split() == ["cam0", "running", "4.9", "151", "ms", "3", "1", "42", "cuda:0"]
    assert lines[2].split() == ["far", "backoff", "4s", "-", "-", "-", "-", "-", "-"]
    assert connect_address("tcp://0.0.0.0:5556") == "tcp://127.0.0.1:5556"
    assert connect_address("tcp://*:5556") == "tcp://127.0.0.1:5556"
    assert connect_address("tcp://10.1.2.3:5556") == "tcp://10.1.2.3:5556"


def test_launch_subcommand_plugs_into_the_cli_parser() -> None:
    """What the one line in cli.build_parser does: `sam2long-stream launch FILE`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "launch" not in sub.choices:  # not wired into cli.py yet
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
    keys.mkdir()
    clients.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(keys, "server")
    _, allowed_secret = zmq.auth.create_certificates(keys, "allowed")
    _, stranger_secret = zmq.auth.create_certificates(keys, "stranger")
    os.replace(keys / "allowed.key", clients / "allowed.key")
    server_key, _ = zmq.auth.load_certificate(server_public)
    addrs = [s.getsockopt_string(zmq.LAST_ENDPOINT) for s in upstreams.values()]
    proxy = Proxy(
        "tcp://127.0.0.1:*", addrs, curve_secret=server_secret, curve_clients=str(clients)
    )
    endpoint = proxy.start()
    ctx = zmq.Context()
    socks = []

    def subscriber(secret_file: str | None) -> zmq.Socket:
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


def test_proxy_reads_curve_upstreams_with_its_client_key(tmp_path: Path) -> None:
    """A node with curve_secret/curve_clients is a CURVE server: the proxy (and the
    launcher's status socket) connect to it with the launcher's key, plain ones without."""
    keys = tmp_path / "keys"
    keys.mkdir()
    _, node_secret = zmq.auth.create_certificates(keys, "node")
    launcher_public, launcher_secret = zmq.auth.create_certificates(keys, "launcher")
    clients = tmp_path / "clients"
    clients.mkdir()
    os.replace(launcher_public, clients / "launcher.key")
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(clients))
    secure = ctx.socket(zmq.XPUB)
    secure.curve_server = True
    secure.curve_publickey, secure.curve_secretkey = zmq.auth.load_certificate(node_secret)
    secure.bind("tcp://127.0.0.1:*")
    plain = ctx.socket(zmq.XPUB)
    plain.bind("tcp://127.0.0.1:*")
    ups = [
        Upstream(plain.getsockopt_string(zmq.LAST_ENDPOINT)),
        Upstream(secure.getsockopt_string(zmq.LAST_ENDPOINT), load_public_key(node_secret, "t")),
    ]
    proxy = Proxy("tcp://127.0.0.1:*", ups, client_keys=load_secret_key(launcher_secret, "t"))
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
        for pipe, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(pipe, sink), daemon=True).start()

    @staticmethod
    def _pump(pipe: Any, sink: list[str]) -> None:
        for line in pipe:
            sink.append(line.rstrip("\n"))

    def health(self) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())
        except OSError:
            return None

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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"launcher did not stop in {timeout} s: {self.log()}") from None


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


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def launched() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:  # never leave a launcher (and its nodes) behind a failed test
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


@pytest.mark.rtsp
def test_three_streams_restart_one_address_and_clean_stop(
    tmp_path: Path, rtsp_camera_factory: Callable[..., Any], launched: list[Run]
) -> None:
    camera = rtsp_camera_factory(width=128, height=96, fps=3)
    proxy = f"tcp://127.0.0.1:{free_port()}"
    box = [{"id": 1, "box": [10, 10, 60, 60]}]
    site = {
        "launcher": {"restart_delay_s": 0.5, "restart_max_delay_s": 2.0, "stop_timeout_s": 15.0},
        "proxy": {"bind": proxy},
        "defaults": SMALL,
        "streams": [
            stream("cam-a", prompts=box),
            stream("cam-b", prompts=box),
            stream("cam-rtsp", source=camera.url, prompts=box),
        ],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    ids = {"cam-a", "cam-b", "cam-rtsp"}

    run = Run(path)
    launched.append(run)
    with Subscriber(proxy, topics=("masks/",)) as sub:  # ONE subscriber, ONE address
        first = run.wait_for(
            "every node running",
            lambda: (r := run.rows()) and all(r[s]["state"] == "running" for s in ids) and r,
            timeout=90,
        )
        pids = {sid: first[sid]["pid"] for sid in ids}
        assert len(set(pids.values())) == 3 and all(psutil.pid_exists(p) for p in pids.values())

        seen: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while set(seen) != ids and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=0.5)
            if msg is not None:
                seen[msg.stream_id] = seen.get(msg.stream_id, 0) + 1
                assert msg.objects and msg.objects[0]["id"] == 1
        assert set(seen) == ids, seen

        # Crash one node: the launcher restarts it and it publishes again.
        victim = "cam-b"
        os.kill(pids[victim], signal.SIGKILL)
        killed_ns = time.time_ns()
        after = run.wait_for(
            "the killed node restarted and running",
            lambda: (
                (r := run.rows())
                and r[victim]["restarts"] == 1
                and r[victim]["pid"] not in (None, pids[victim])
                and r[victim]["state"] == "running"
                and r
            ),
            timeout=60,
        )
        assert _gone(pids[victim])
        for sid in ids - {victim}:
            assert after[sid]["pid"] == pids[sid] and after[sid]["restarts"] == 0
        resumed = False
        deadline = time.monotonic() + 30
        while not resumed and time.monotonic() < deadline:
            msg = sub.recv(timeout_s=0.5)
            resumed = (
                msg is not None and msg.stream_id == victim and msg.capture_time_ns > killed_ns
            )
        assert resumed, "the restarted node's masks never reached the proxy's subscriber"
    all_pids = [*pids.values(), after[victim]["pid"]]

    assert run.stop(signal.SIGTERM) == 0, run.log()
    assert all(_gone(p) for p in all_pids), [p for p in all_pids if not _gone(p)]
    # The live table went to stdout, ending with every node stopped by the launcher.
    final = parse_table([line for line in run.out if line.strip()][-4:])
    assert set(final) == ids and all(row["STATE"] == "stopped" for row in final.values())
    assert final[victim]["RESTARTS"] == "1" and final["cam-a"]["RESTARTS"] == "0"
    log = "\n".join(run.err)
    assert f"{victim}: node exited (signal 9)" in log and "restarting in 0.5 s" in log


def test_backoff_doubles_up_to_the_cap_and_never_gives_up(
    tmp_path: Path, launched: list[Run]
) -> None:
    # A checkpoint that does not exist makes `run` exit 1 at once (before torch loads).
    site = {
        "launcher": {"restart_delay_s": 0.2, "restart_max_delay_s": 0.8},
        "streams": [stream("broken", checkpoint="/nonexistent/sam2.pt")],
    }
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path, "--no-table")
    launched.append(run)
    delays = run.wait_for(
        "five restarts",
        lambda: len(d := re.findall(r"restarting in ([\d.]+) s", "\n".join(run.err))) >= 5 and d,
        timeout=60,
    )
    assert [float(d) for d in delays[:5]] == [0.2, 0.4, 0.8, 0.8, 0.8]
    assert "checkpoint not found: /nonexistent/sam2.pt" in run.log()  # the node's own words
    assert run.rows()["broken"]["restarts"] >= 4
    assert run.stop() == 0
    assert run.out == []  # --no-table: nothing on stdout


def test_restart_never_reports_the_failure_and_exits_1(tmp_path: Path) -> None:
    site = {"streams": [stream("once", checkpoint="/nonexistent/sam2.pt", restart="never")]}
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    out = subprocess.run([*LAUNCH, str(path)], capture_output=True, text=True, timeout=60, env=ENV)
    assert out.returncode == 1, out.stderr
    assert "once: node exited (code 1)" in out.stderr and "not restarting" in out.stderr
    last = out.stdout.strip().splitlines()[-1].split()
    assert last[:3] == ["once", "failed", "(1)"]


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_nodes_die_with_a_killed_launcher(tmp_path: Path, launched: list[Run]) -> None:
    site = {"defaults": SMALL, "streams": [stream("orphan")]}
    path = tmp_path / "site.toml"
    path.write_text(toml_of(site))
    run = Run(path, "--no-table")
    launched.append(run)
    pid = run.wait_for(
        "the node running",
        lambda: (r := run.rows()) and r["orphan"]["state"] == "running" and r["orphan"]["pid"],
        timeout=60,
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
