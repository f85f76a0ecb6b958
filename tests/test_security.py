"""Who can reach a node and what they can make it do: the loopback rule, CurveZMQ
(real keys, real sockets, a running node), the HTTP health and metrics endpoint, the
size caps on what the SDK receives, and an audit that nothing from a socket is
unpickled or evaluated."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from sam2long_stream import Prompt, Tracker, TrackerConfig, cli, security, settings
from sam2long_stream.control import ControlClient
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.transport.subscriber import MasksMessage, Subscriber
from tests.conftest import free_port

ANY = "tcp://127.0.0.1:*"
SYN = "synthetic://moving-shapes?fps=10"
BOX = (40.0, 30.0, 140.0, 130.0)
PACKAGE = Path(__file__).resolve().parents[1] / "sam2long_stream"


@pytest.fixture(scope="module")
def tracker() -> Iterator[Tracker]:
    """One small tracker for the module; one torch thread (2 cores, shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=64))
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def started(config: NodeConfig, tracker: Tracker) -> Iterator[Node]:
    node = Node(config, tracker=tracker).start()
    try:
        yield node
    finally:
        node.stop()
        assert node.join(30), "node did not stop"
    assert node.error is None, node.error


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes, str]:
    """(status, body, content type), 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def port_is_free(port: int, within_s: float = 3.0) -> bool:
    """Whether the port can be bound (ZeroMQ closes listeners on its I/O thread, a
    moment after close() returns). SO_REUSEADDR as any server sets it: connections in
    TIME_WAIT do not count, a listener still bound does."""
    deadline = time.monotonic() + within_s
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.05)


# --------------------------------------------------------------------------- loopback


def test_defaults_bind_loopback_only() -> None:
    config = NodeConfig.one_stream(source=SYN)
    assert config.pub == "tcp://127.0.0.1:5556" and config.control == "tcp://127.0.0.1:5557"
    assert config.http is None and config.allow_remote is False
    assert config.remote_binds() == []
    assert settings.DEFAULTS["pub"] == config.pub  # the one declaration of each default
    assert settings.DEFAULTS["control"] == config.control
    assert settings.DEFAULTS["http"] is None


@pytest.mark.parametrize(
    ("field", "address"),
    [
        ("pub", "tcp://0.0.0.0:5556"),
        ("pub", "tcp://*:5556"),
        ("control", "tcp://10.1.2.3:5557"),
        ("control", "tcp://eth0:5557"),
        ("http", "0.0.0.0:8080"),
        ("http", "[::]:8080"),
    ],
)
def test_non_loopback_needs_allow_remote(field: str, address: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address; pass --allow-remote") as err:
        NodeConfig.one_stream(source=SYN, **{field: address})
    assert address in str(err.value) and "\n" not in str(err.value)
    what = {"pub": "publisher", "control": "control socket", "http": "HTTP endpoint"}[field]
    assert NodeConfig.one_stream(
        source=SYN, allow_remote=True, **{field: address}
    ).remote_binds() == [what]


@pytest.mark.parametrize(
    "address", ["tcp://127.0.0.1:*", "tcp://localhost:5556", "tcp://[::1]:5556", "ipc:///tmp/x"]
)
def test_loopback_and_local_transports_need_nothing(address: str) -> None:
    assert NodeConfig.one_stream(source=SYN, pub=address).remote_binds() == []


@pytest.mark.parametrize(
    ("address", "needle"),
    [("foo", "bad address 'foo'"), ("tcp://nope", "PORT"), ("udp://1.2.3.4:5", "expected tcp")],
)
def test_malformed_addresses_are_one_sentence(address: str, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        NodeConfig.one_stream(source=SYN, pub=address)


def test_remote_bind_warns_without_curve(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = NodeConfig.one_stream(
        source=SYN, pub=f"tcp://0.0.0.0:{port}", control=None, allow_remote=True
    )
    with caplog.at_level(logging.WARNING, logger="sam2long_stream.node"):
        node = Node(config, tracker=tracker)
    node.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("publisher reachable from other hosts without authentication" in w for w in warnings)
    assert port_is_free(port)  # close() released it


# --------------------------------------------------------------------------- CurveZMQ


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """node and client keypairs from the CLI; client's public key authorised; an
    intruder's keypair that is not."""
    root = tmp_path_factory.mktemp("keys")
    assert cli.main(["keys", "--out", str(root / "node"), "--name", "node"]) == 0
    assert cli.main(["keys", "--out", str(root / "client"), "--name", "client"]) == 0
    assert cli.main(["keys", "--out", str(root / "intruder"), "--name", "intruder"]) == 0
    authorised = root / "authorised"
    authorised.mkdir()
    (authorised / "client.key").write_bytes((root / "client" / "client.key").read_bytes())
    return {
        "node_secret": root / "node" / "node.key_secret",
        "node_public": root / "node" / "node.key",
        "client_secret": root / "client" / "client.key_secret",
        "intruder_secret": root / "intruder" / "intruder.key_secret",
        "clients": authorised,
    }


def test_keys_command_writes_a_private_keypair(keys: dict[str, Path], capsys) -> None:
    secret = keys["node_secret"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public, secret_pair = zmq.auth.load_certificate(secret)
    assert len(public) == 40 and secret_pair is not None and len(secret_pair) == 40
    assert zmq.auth.load_certificate(keys["node_public"]) == (public, None)
    # never silently replaced
    assert cli.main(["keys", "--out", str(secret.parent), "--name", "node"]) == 1
    assert "already exist" in capsys.readouterr().err
    assert zmq.auth.load_certificate(secret) == (public, secret_pair)


def test_curve_admits_only_authorised_clients(
    tracker: Tracker, keys: dict[str, Path], capsys
) -> None:
    config = NodeConfig.one_stream(
        source=SYN,
        prompts={1: Prompt(box=BOX)},
        pub=ANY,
        control=ANY,
        curve_secret=str(keys["node_secret"]),
        curve_clients=str(keys["clients"]),
    )
    good = {"curve_secret": keys["client_secret"], "curve_server": keys["node_public"]}
    intruder = {"curve_secret": keys["intruder_secret"], "curve_server": keys["node_public"]}
    with started(config, tracker) as node:
        assert node.control_endpoint is not None
        subs = {
            "good": Subscriber(node.endpoint, **good),
            "plain": Subscriber(node.endpoint),
            "intruder": Subscriber(node.endpoint, **intruder),
        }
        try:
            msg = subs["good"].recv(timeout_s=30)
            assert isinstance(msg, MasksMessage) and msg.object_ids == [1]
            for name in ("plain", "intruder"):
                assert subs[name].recv(timeout_s=1.0) is None, name
            # the refused ones did not disturb the authorised one
            assert isinstance(subs["good"].recv(timeout_s=10), MasksMessage)
        finally:
            for sub in subs.values():
                sub.close()

        plain = ControlClient(node.control_endpoint, timeout_s=1.0)
        bad = ControlClient(node.control_endpoint, timeout_s=1.0, **intruder)
        try:
            with pytest.raises(TimeoutError):
                plain.status()
            with pytest.raises(TimeoutError):
                bad.add_object(9, box=[10, 10, 50, 50])
        finally:
            plain.close()
            bad.close()
        with ControlClient(node.control_endpoint, **good) as client:
            assert client.status()["objects"] == [1]

        # The CLI with the same flags.
        curve_flags = ["--curve-secret", str(keys["client_secret"])]
        curve_flags += ["--curve-server", str(keys["node_public"])]
        capsys.readouterr()
        assert cli.main(["prompt", "--control", node.control_endpoint, *curve_flags, "status"]) == 0
        reply = json.loads(capsys.readouterr().out)
        assert reply["ok"] is True and reply["objects"] == [1]
        argv = ["subscribe", "--pub", node.endpoint, "--topic", "masks/", "--count", "2"]
        assert cli.main([*argv, "--timeout", "30", *curve_flags]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all(line.startswith("masks cam0 ") for line in lines)
        no_keys = ["subscribe", "--pub", node.endpoint, "--count", "1", "--timeout", "1"]
        assert cli.main(no_keys) == 1  # nothing arrives without keys
        assert node.tracker.object_ids == [1]  # the intruder's add never reached the node


def test_curve_configuration_mistakes_are_one_sentence(keys: dict[str, Path], tmp_path: Path):
    with pytest.raises(ValueError, match="both curve_secret"):
        NodeConfig.one_stream(source=SYN, curve_secret=str(keys["node_secret"]))
    with pytest.raises(ValueError, match="no secret key"):
        security.load_secret(keys["node_public"])
    with pytest.raises(ValueError, match="not found"):
        security.load_secret(tmp_path / "missing.key_secret")
    (tmp_path / "junk.key_secret").write_text("hello\n")
    with pytest.raises(ValueError, match="cannot read"):
        security.load_secret(tmp_path / "junk.key_secret")
    with pytest.raises(ValueError, match=r"holds no public \.key"):
        security.check_clients_dir(tmp_path)
    with pytest.raises(ValueError, match="both --curve-secret"):
        Subscriber("tcp://127.0.0.1:1", curve_secret=keys["client_secret"])


# --------------------------------------------------------------------------- HTTP


def metric(text: str, name: str) -> float:
    """The value of an unlabelled-but-stream_id sample in Prometheus text."""
    match = re.search(rf"^{re.escape(name)}\{{stream_id=\"[^\"]+\"\}} (\S+)$", text, re.M)
    assert match, f"{name} not in metrics:\n{text}"
    return float(match.group(1))


def test_healthz_and_metrics_follow_the_node(tracker: Tracker) -> None:
    calls = {"n": 0, "fail": False}
    real_step = tracker.step

    def step(frame, prompts=None):
        calls["n"] += 1
        if calls["fail"]:
            raise RuntimeError("injected failure")
        return real_step(frame, prompts)

    config = NodeConfig.one_stream(
        source=SYN,
        prompts={1: Prompt(box=BOX)},
        pub=ANY,
        control=None,
        http="127.0.0.1:0",
        unhealthy_after=2,
    )
    tracker.step = step  # type: ignore[method-assign]
    try:
        node = Node(config, tracker=tracker)
        assert node.http_endpoint is not None
        port = int(node.http_endpoint.rsplit(":", 1)[1])
        assert node.health()[0] is False  # created, not running yet
        node.start()
        try:
            deadline = time.monotonic() + 30
            while node.status()["frames_processed"] < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            code, body, ctype = http_get(node.http_endpoint + "/healthz")
            assert code == 200 and ctype == "application/json", body
            health = json.loads(body)
            assert health["status"] == "ok" and health["state"] == "running"

            code, body, ctype = http_get(node.http_endpoint + "/metrics")
            text = body.decode()
            assert code == 200 and ctype.startswith("text/plain")
            assert metric(text, "sam2long_frames_processed_total") >= 3
            assert metric(text, "sam2long_tracker_failures_total") == 0
            assert metric(text, "sam2long_healthy") == 1
            assert metric(text, "sam2long_objects") == 1
            for name in (
                "sam2long_dropped_frames_total",
                "sam2long_dropped_messages_total",
                "sam2long_reconnects_total",
                "sam2long_pathway_switches_total",
                "sam2long_fps",
            ):
                metric(text, name)
            assert re.search(
                r'^sam2long_latency_seconds_count\{stream_id="cam0"\} [1-9]', text, re.M
            )
            assert 'sam2long_latency_seconds_bucket{le="+Inf",stream_id="cam0"}' in text
            assert http_get(node.http_endpoint + "/nope")[0] == 404

            calls["fail"] = True
            deadline = time.monotonic() + 30
            while node.state != "unhealthy" and time.monotonic() < deadline:
                time.sleep(0.1)
            code, body, _ = http_get(node.http_endpoint + "/healthz")
            assert code == 503, body
            health = json.loads(body)
            assert health["status"] == "unhealthy"
            assert any("injected failure" in r for r in health["reasons"])
            text = http_get(node.http_endpoint + "/metrics")[1].decode()
            assert metric(text, "sam2long_tracker_failures_total") >= 2
            assert metric(text, "sam2long_healthy") == 0
        finally:
            node.stop()
            assert node.join(30)
        assert node.error is None
        assert port_is_free(port)  # the endpoint closed with the node
        assert node.health()[0] is False and "stopped" in node.health()[1]["reasons"][0]
    finally:
        del tracker.step


def test_healthz_fails_after_the_grace_period_without_frames(tracker: Tracker) -> None:
    # A WHIP endpoint nobody publishes to: the node waits, healthy, then not.
    config = NodeConfig.one_stream(
        source=f"whip://127.0.0.1:{free_port()}/whip/cam0",
        pub=ANY,
        control=None,
        http="127.0.0.1:0",
        health_grace_s=1.0,
    )
    with started(config, tracker) as node:
        assert node.http_endpoint is not None
        code, body, _ = http_get(node.http_endpoint + "/healthz")
        assert code == 200 and json.loads(body)["state"] == "waiting"
        time.sleep(1.5)
        code, body, _ = http_get(node.http_endpoint + "/healthz")
        assert code == 503
        assert "no frame yet" in json.loads(body)["reasons"][0]


def test_two_nodes_in_one_process_keep_their_own_metrics(tracker: Tracker) -> None:
    a = Node(
        NodeConfig.one_stream(source=SYN, pub=ANY, control=None, stream_id="a"), tracker=tracker
    )
    b = Node(
        NodeConfig.one_stream(source=SYN, pub=ANY, control=None, stream_id="b"), tracker=tracker
    )
    try:
        assert a.metrics.registry is not b.metrics.registry
        assert 'stream_id="a"' in a.metrics.render().decode()
        assert 'stream_id="a"' not in b.metrics.render().decode()
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------- input caps


def test_subscriber_drops_frames_over_its_size_cap() -> None:
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(f"tcp://127.0.0.1:{port}", topics=("status/",), max_message_bytes=4096)
    uncapped = Subscriber(f"tcp://127.0.0.1:{port}", topics=("status/",))
    try:
        from sam2long_stream.transport import wire

        small = wire.encode_status("cam0", "running")
        big = wire.encode_status("cam0", "running", padding="x" * 10_000)
        deadline = time.monotonic() + 10
        got = None
        while got is None and time.monotonic() < deadline:  # wait out the slow joiner
            pub.send_multipart(small)
            got = sub.recv(timeout_s=0.1)
        assert got is not None
        while uncapped.recv(timeout_s=0.2) is None and time.monotonic() < deadline:
            pub.send_multipart(small)
        pub.send_multipart(big)
        received, control = [], []
        for _ in range(10):
            pub.send_multipart(small)
            for into, s in ((received, sub), (control, uncapped)):
                msg = s.recv(timeout_s=0.1)
                if msg is not None:
                    into.append(msg)
        assert any(m.get("padding") for m in control)  # the big one was sent...
        assert not any(m.get("padding") for m in received)  # ...and refused by the cap
    finally:
        sub.close()
        uncapped.close()
        pub.close()


AUDITED = r"pickle|marshal|shelve|\beval\(|\bexec\(|recv_pyobj|recv_serialized|yaml\.load"


def test_nothing_from_a_socket_is_unpickled_or_evaluated() -> None:
    """Every module that handles network input: no pickle, marshal, eval or exec. (The
    tracker's torch.load reads the operator's own checkpoint file, never a socket.)"""
    socket_facing = [
        p for p in PACKAGE.rglob("*.py") if "tracker" not in p.parts and p.name != "launch.py"
    ]
    assert len(socket_facing) >= 15
    hits = [
        f"{p.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for p in socket_facing
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(AUDITED, line) and not line.lstrip().startswith("#")
    ]
    assert hits == []
