"""The `sam2long-stream` console script as a user runs it: real subprocesses, real sockets
on 127.0.0.1. User errors must be one line and no traceback; `run` must stop by itself
(--max-frames) or on SIGTERM with a summary; `subscribe`, `view` and `prompt` must work
against a running node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sam2long_stream import settings
from sam2long_stream.cli import build_parser, run_config
from tests.conftest import REPO_ROOT, free_port

SCRIPT = Path(sys.executable).with_name("sam2long-stream")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sam2long_stream.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO_ROOT
    )


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=REPO_ROOT,
    )


def wait_stderr_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    """Read the process's stderr until a line containing `needle`; the rest is drained on
    a thread (kept in proc.stderr_lines) so the pipe never fills."""
    lines: list[str] = []
    found = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if needle in line:
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    proc.stderr_lines = lines  # type: ignore[attr-defined]
    if not found.wait(timeout):
        proc.kill()
        raise AssertionError(f"no {needle!r} on stderr within {timeout} s: {lines}")
    return next(line for line in lines if needle in line)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{proc.args} did not exit within {timeout} s: {out}") from None
    return proc.returncode, out


def assert_one_error_line(result: subprocess.CompletedProcess[str], expect: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("sam2long-stream: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert len(lines) <= 2, result.stderr  # at most the "A -> B" start line before it
    assert expect in errors[0], errors[0]


# --------------------------------------------------------------------------- user errors

ANY = "tcp://127.0.0.1:*"
SYN = "synthetic://moving-shapes"


@pytest.mark.parametrize(
    ("args", "expect", "status"),
    [
        (["run", "rtsp://127.0.0.1:1/none"], "cannot open rtsp://127.0.0.1:1/none", 1),
        (["run", SYN, "--box", "1,2,3"], "bad box '1,2,3'", 2),
        (["run", SYN, "--box", "50,20,10,40"], "need x0 < x1", 2),
        (["run", SYN, "--point", "5"], "bad point '5'", 2),
        (["run", SYN, "--model", "sam3_giant"], "unknown model 'sam3_giant'", 2),
        (["run", SYN, "--checkpoint", "/nonexistent/sam2.1_hiera_tiny.pt"], "not found", 2),
        (["run", "ftp://camera/stream"], "unsupported source 'ftp://camera/stream'", 2),
        (["run", SYN, "--image-size", "100"], "image_size must be a multiple of 64", 2),
        (["run", SYN, "--policy", "sometimes"], "invalid choice: 'sometimes'", 2),
        (["run", SYN, "--config", "/nonexistent/node.toml"], "config file not found", 2),
        (["run", SYN, "--pub", "tcp://256.1.1.1:5"], "cannot bind publisher", 1),
        (["run", SYN, "--pub", "foo"], "bad address 'foo': expected tcp://HOST:PORT", 2),
        (["run", SYN, "--pathways", "0"], "--pathways must be an integer in 1..16, got 0", 2),
        (["run", SYN, "--lag", "-1"], "--lag must be an integer >= 0, got -1", 2),
        (["run", SYN, "--jitter-frames", "0"], "--jitter-frames must be an integer in 1..30", 2),
        (["run", SYN, "--threads", "0"], "--threads must be an integer >= 1", 2),
        (["run", SYN, "--health-grace", "0"], "--health-grace must be", 2),
        (["run", SYN, "--config", "/"], "config file / is a directory", 2),
        (["run", SYN, "--pub", "tcp://0.0.0.0:5556"], "not a loopback address", 2),
        (["run", SYN, "--pub", "tcp://*:5556"], "refusing to bind the publisher", 2),
        (["run", SYN, "--http", "0.0.0.0:8080"], "refusing to bind the HTTP endpoint", 2),
        (["run", SYN, "--http", "nope"], "bad HTTP address 'nope'", 2),
        (["run", SYN, "--curve-secret", "n.key_secret"], "CurveZMQ needs both", 2),
        (
            ["run", SYN, "--curve-secret", "/nonexistent/n.key_secret", "--curve-clients", "/"],
            "key file not found: /nonexistent/n.key_secret",
            2,
        ),
        (["run", SYN, SYN, "--stream-id", "a", "--stream-id", "a"], "duplicate stream id(s): a", 2),
        (["run", SYN, SYN, "--stream-id", "a"], "--stream-id given 1 times for 2 source(s)", 2),
        (["run", SYN, "--stream-id", "a/b"], "stream id must be 1-64 characters", 2),
        (["run", SYN, "ftp://cam/x"], "unsupported source 'ftp://cam/x'", 2),
        (["prompt", "remove-stream"], "prompt remove-stream needs the stream's id", 2),
        (["subscribe", "--pub", "foo", "--count", "1"], "--pub: bad address 'foo'", 2),
        (["prompt", "--control", "tcp://nope", "status"], "bad address 'tcp://nope'", 2),
        (["prompt", "--control", "tcp://nohost:notaport", "status"], "PORT 1..65535", 2),
        (["prompt", "--control", "foo://x", "status"], "bad address 'foo://x'", 2),
        (["prompt", "--control", "", "status"], "--control: bad address ''", 2),
        (["subscribe", "--pub", "tcp://*:5556"], "* is for binding", 2),
        (["view", "--pub", "ipc://"], "ipc:// needs a name", 2),
        (["view", "--out", "masks.txt"], "--out: cannot tell a video format from masks.txt", 2),
        (["view", "--png", "last.xyz"], "--png: cannot tell an image format from last.xyz", 2),
        (["run", SYN, "--overlay-out", "o.foo"], "--overlay-out: cannot tell a video format", 2),
        (["run", SYN, "--overlay-png", "o"], "--overlay-png: cannot tell an image format", 2),
        (
            ["subscribe", "--pub", "tcp://127.0.0.1:1", "--count", "1", "--timeout", "0.3"],
            "received 0 of 1 messages from tcp://127.0.0.1:1",
            1,
        ),
        (["subscribe", "--count", "0"], "--count: must be a whole number >= 1, got '0'", 2),
        (["subscribe", "--timeout", "nan"], "--timeout: must be seconds in (0, 604800]", 2),
        (["prompt", "--timeout", "-1", "status"], "--timeout: must be seconds", 2),
        (["prompt", "add", "--id", "-1", "--box", "1,2,3,4"], "--id: must be an object id", 2),
        (["prompt", "--stream", "a/b", "status"], "--stream: stream id must be 1-64", 2),
        (["subscribe", "--log-level", "basic_format"], "log level must be one of DEBUG", 2),
        (
            ["subscribe", "--curve-secret", "/nonexistent/c.key_secret", "--curve-server", "/x"],
            "key file not found",
            2,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_user_errors_are_one_line(args: list[str], expect: str, status: int) -> None:
    """One line each; exit 2 for what was asked wrong (found before the node runs), 1 for
    what failed at run time (a source that never delivered, an address in use)."""
    if args[0] == "run" and "--pub" not in args:
        args = [*args, "--pub", ANY]
    if args[0] == "run":
        args = [*args, "--control", "off"]
    result = cli(*args, timeout=60)
    assert_one_error_line(result, expect)
    assert result.returncode == status


def test_unreadable_checkpoint_and_bad_config(tmp_path: Path) -> None:
    junk = tmp_path / "sam2.1_hiera_tiny.pt"
    junk.write_bytes(b"this is not a checkpoint")
    result = cli("run", SYN, "--checkpoint", str(junk), "--pub", ANY, "--control", "off")
    assert_one_error_line(result, "checkpoint")

    toml = tmp_path / "node.toml"
    toml.write_text('source = "synthetic://moving-shapes"\nframes_per_second = 3\n')
    result = cli("run", "--config", str(toml), "--pub", ANY)
    assert_one_error_line(result, "unknown key 'frames_per_second'")


def test_config_file_value_types(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('allow_remote = "yes"\n')
    with pytest.raises(ValueError, match="allow_remote must be true or false"):
        settings.read_toml(str(toml))
    toml.write_text('health_grace = "soon"\n')
    with pytest.raises(ValueError, match="health_grace must be a number"):
        settings.read_toml(str(toml))
    toml.write_bytes(b'source = "\xff\xfe"\n')
    with pytest.raises(ValueError, match="not valid TOML"):
        settings.read_toml(str(toml))
    toml.write_text('http = "127.0.0.1:8080"\nallow_remote = true\nhealth_grace = 5\n')
    assert settings.read_toml(str(toml)).values == {
        "http": "127.0.0.1:8080",
        "allow_remote": True,
        "health_grace": 5.0,
    }


def test_run_help_shows_the_device_default() -> None:
    result = cli("run", "--help", timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--device V torch device: auto (CUDA when present, else CPU)" in text
    assert "(default auto)" in text and "[SOURCE ...]" in text


def test_prompt_without_node_is_one_line() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    result = cli("prompt", "--control", address, "--timeout", "0.5", "status", timeout=30)
    assert_one_error_line(result, address)
    assert result.returncode == 1  # a well-formed address nobody answers: a runtime failure


# --------------------------------------------------------------------------- parsing


def test_example_config_and_prompt_flags() -> None:
    example = str(REPO_ROOT / "launch" / "node.example.toml")
    config = settings.read_toml(example)
    assert config.sources[0].startswith("rtsp://") and config.values["pathways"] == 3
    assert sorted(config.prompts) == [1, 2]

    parser = build_parser()
    # flags override the file; prompts on the command line replace the file's
    args = parser.parse_args(["run", "--config", example, "--pathways", "2", "--box", "1,2,3,4"])
    node = run_config(args)
    assert node.tracker.num_pathways == 2 and node.tracker.device == "cpu"
    assert [s.stream_id for s in node.streams] == ["cam0"]
    assert list(node.streams[0].prompts) == [1] and node.streams[0].prompts[1].box == (1, 2, 3, 4)
    assert sorted(
        run_config(parser.parse_args(["run", "--config", example])).streams[0].prompts
    ) == [
        1,
        2,
    ]

    def cli_prompts(args):
        return run_config(args).streams[0].prompts

    args = parser.parse_args(
        ["run", SYN, "--box", "1,2,30,40", "--box", "5,5,9,9", "--point", "7,8", "--point", "9,9,0"]
    )
    prompts = cli_prompts(args)
    assert sorted(prompts) == [1, 2, 3, 4]  # boxes 1, 2; each point its own object
    assert tuple(prompts[1].box) == (1.0, 2.0, 30.0, 40.0)
    assert list(prompts[4].labels) == [0]
    flags = ["--box", "1,2,30,40", "--point", "7,8", "--point", "9,9,0", "--point-object", "1"]
    args = parser.parse_args(["run", SYN, *flags])
    prompts = cli_prompts(args)
    assert sorted(prompts) == [1]  # box and both points: one prompt for object 1
    assert list(prompts[1].points) == [(7.0, 8.0), (9.0, 9.0)]
    assert list(prompts[1].labels) == [1, 0] and prompts[1].box is not None


# --------------------------------------------------------------------------- end to end


def test_run_max_frames_with_subscribe_and_view(tmp_path: Path) -> None:
    pub = f"tcp://127.0.0.1:{free_port()}"
    toml = tmp_path / "node.toml"
    toml.write_text(
        'source = "synthetic://moving-shapes?fps=10"\n'
        'control = "off"\n'
        'stream_id = "cli"\n'
        'checkpoint = "random"\n'  # random weights, asked for: the user is warned
        "max_frames = 100\n"  # the command line's --max-frames wins
        "[[prompts]]\n"
        "id = 3\n"
        "box = [40, 30, 140, 130]\n"
    )
    video, png = tmp_path / "view.mp4", tmp_path / "view.png"
    # masks and status on their own subscribers: how many status messages come between
    # masks depends on how slow the frames are
    sub = spawn("subscribe", "--pub", pub, "--topic", "masks/", "--count", "5", "--timeout", "150")
    status_sub = spawn(
        "subscribe", "--pub", pub, "--topic", "status/", "--count", "3", "--timeout", "150"
    )
    view = spawn("view", "--pub", pub, "--count", "3", "--out", str(video), "--png", str(png))
    wait_stderr_line(sub, "subscribed to")
    wait_stderr_line(status_sub, "subscribed to")
    wait_stderr_line(view, "subscribed to")

    last = tmp_path / "last.png"
    run = cli("run", "--config", str(toml), "--max-frames", "5", "--pub", pub,
              "--overlay-png", str(last), timeout=150)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "5 tracked" in run.stdout and "node overhead" in run.stdout
    assert f"overlay: {last} (the last of 5 frames)" in run.stdout  # a PNG alone counts too
    assert last.stat().st_size > 0
    assert "random weights" in run.stderr  # random weights: the user is told

    code, out = finish(sub)
    assert code == 0, sub.stderr_lines  # type: ignore[attr-defined]
    masks = [line for line in out.splitlines() if line.startswith("masks cli ")]
    assert len(masks) == 5, out  # every frame the node tracked
    seqs = [int(line.split("seq=")[1].split()[0]) for line in masks]
    assert seqs == sorted(set(seqs))
    for line in masks:
        assert " 3:" in line and "latency=" in line and "switch=" in line
    code, out = finish(status_sub)
    assert code == 0, status_sub.stderr_lines  # type: ignore[attr-defined]
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("status cli ") for line in lines), out

    code, out = finish(view)
    assert code == 0, view.stderr_lines  # type: ignore[attr-defined]
    assert "wrote 3 frames" in out
    import av

    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 3 and (frames[0].width, frames[0].height) == (320, 240)
    assert png.stat().st_size > 0


def test_prompt_against_a_running_node_then_sigterm() -> None:
    pub = f"tcp://127.0.0.1:{free_port()}"
    control = f"tcp://127.0.0.1:{free_port()}"
    node = spawn(
        "run", f"{SYN}?fps=10", "--pub", pub, "--control", control, "--box", "40,30,140,130"
    )
    try:
        deadline = time.monotonic() + 90
        while True:  # the node is importing torch and building its tracker
            status = cli("prompt", "--control", control, "--timeout", "1", "status")
            if status.returncode == 0 or time.monotonic() > deadline:
                break
            assert node.poll() is None, node.communicate()
        assert status.returncode == 0, status.stderr
        reply = json.loads(status.stdout)
        assert reply["ok"] is True and reply["state"] in ("waiting", "running")

        added = cli("prompt", "--control", control, "add", "--box", "150,100,230,180")
        assert added.returncode == 0, added.stdout + added.stderr
        reply = json.loads(added.stdout)
        assert reply["ok"] is True and reply["object_id"] == 2
        assert reply["applied"] is True or reply["queued"] is True  # a slow frame: queued

        outside = cli("prompt", "--control", control, "add", "--id", "9", "--box", "900,0,990,50")
        assert outside.returncode == 1
        reply = json.loads(outside.stdout)
        assert reply["ok"] is False and "outside" in reply["error"]

        assert cli("prompt", "--control", control, "set", "num_pathways", "2").returncode == 0
        assert cli("prompt", "--control", control, "remove", "--id", "42").returncode == 1
        corners = ("0,0", "100,0", "100,240", "0,240")
        zone = cli("prompt", "--control", control, "add-zone", "left", *corners, "--enter", "0.6")
        assert zone.returncode == 0, zone.stdout + zone.stderr
        assert json.loads(zone.stdout)["zones"] == ["left"]
        flat = cli("prompt", "--control", control, "add-zone", "flat", "0,0", "5,5")
        assert flat.returncode == 1 and "polygon" in json.loads(flat.stdout)["error"]
        bad = cli("prompt", "--control", control, "add-zone", "x", "0,0", "1;1", "2,2")
        assert bad.returncode == 2 and "bad corner '1;1'" in bad.stderr, bad.stderr
        share = cli("prompt", "--control", control, "add-zone", "x", *corners, "--leave", "nan")
        assert share.returncode == 2 and "fraction" in share.stderr, share.stderr
        removed = cli("prompt", "--control", control, "remove-zone", "left")
        assert removed.returncode == 0 and json.loads(removed.stdout)["zones"] == []
        assert cli("prompt", "--control", control, "remove-zone", "left").returncode == 1
        status = cli("prompt", "--control", control, "status")
        reply = json.loads(status.stdout)
        assert reply["objects"] == [1, 2] and reply["pending_num_pathways"] == 2
        assert node.poll() is None  # refused requests did not hurt the node
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    out, err = node.communicate(timeout=60)
    assert node.returncode == 0, err
    assert "Traceback" not in err
    assert "node overhead" in out and "tracked" in out


def test_two_sources_one_process_with_stream_requests() -> None:
    """`run SRC SRC`: one process, streams cam0 and cam1; `prompt --stream`,
    `prompt add-stream`/`remove-stream`; the summary lists each stream."""
    pub = f"tcp://127.0.0.1:{free_port()}"
    control = f"tcp://127.0.0.1:{free_port()}"
    node = spawn(
        "run",
        f"{SYN}?fps=10",
        f"{SYN}?fps=10&seed=1",
        "--pub",
        pub,
        "--control",
        control,
        "--box",
        "40,30,140,130",
    )

    def prompt(*args: str) -> tuple[int, dict]:
        result = cli("prompt", "--control", control, *args)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout) if result.stdout else {}

    try:
        deadline = time.monotonic() + 120
        while True:  # the node is importing torch and building its tracker
            status = cli("prompt", "--control", control, "--timeout", "1", "status")
            if status.returncode == 0 or time.monotonic() > deadline:
                break
            assert node.poll() is None, node.communicate()
        assert status.returncode == 0, status.stderr
        whole = json.loads(status.stdout)
        assert sorted(whole["streams"]) == ["cam0", "cam1"] and whole["device"] == "cpu"
        assert whole["streams"]["cam1"]["objects"] in ([], [1])  # --box: every stream

        code, reply = prompt("add", "--box", "150,100,230,180")
        assert code == 1 and '"stream"' in reply["error"]  # two streams: name one
        code, reply = prompt("--stream", "cam1", "add", "--id", "5", "--box", "150,100,230,180")
        assert code == 0 and reply["stream"] == "cam1" and reply["object_id"] == 5
        code, reply = prompt("status", "--stream", "cam0")
        assert code == 0 and reply["stream_id"] == "cam0" and 5 not in reply["objects"]

        code, reply = prompt("add-stream", f"{SYN}?fps=5&seed=2", "--stream", "door")
        assert code == 0 and reply["stream"] == "door", reply
        code, reply = prompt("add-stream", "ftp://cam/x")
        assert code == 1 and "unsupported source" in reply["error"]
        code, reply = prompt("remove-stream", "door")
        assert code == 0 and reply["stream"] == "door"
        code, reply = prompt("remove-stream", "door")
        assert code == 1 and "unknown stream 'door'" in reply["error"]
        assert node.poll() is None
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    out, err = node.communicate(timeout=90)
    assert node.returncode == 0, err
    assert "Traceback" not in err
    assert "2 streams -> " in err and "cam0 <- synthetic://" in err
    assert "streams on one model (cpu)" in out
    assert "  cam0: " in out and "  cam1: " in out


def test_sam2longs_thresholds_from_flags_and_toml(tmp_path: Path) -> None:
    """--iou-threshold and --uncertainty (or their TOML keys) reach the node's
    TrackerConfig; the defaults are TrackerConfig's; a value out of range is one line."""
    parser = build_parser()
    default = run_config(parser.parse_args(["run", SYN])).tracker
    assert (default.iou_threshold, default.uncertainty) == (0.1, 2.0)
    flags = ["run", SYN, "--iou-threshold", "0.3", "--uncertainty", "1.5"]
    tracker = run_config(parser.parse_args(flags)).tracker
    assert (tracker.iou_threshold, tracker.uncertainty) == (0.3, 1.5)
    toml = tmp_path / "node.toml"
    toml.write_text("iou_threshold = 0.25\nuncertainty = 3\n")
    tracker = run_config(parser.parse_args(["run", SYN, "--config", str(toml)])).tracker
    assert (tracker.iou_threshold, tracker.uncertainty) == (0.25, 3.0)
    result = cli("run", SYN, "--iou-threshold", "1", timeout=120)
    assert_one_error_line(result, "--iou-threshold must be a number in 0..0.99, got 1")
    assert result.returncode == 2


def test_streams_tables_and_flags(tmp_path: Path) -> None:
    """[[streams]] tables: their own ids, options and prompts; flags override every
    stream; sources on the command line replace the file's; one line per mistake."""
    toml = tmp_path / "node.toml"
    toml.write_text(
        "pathways = 2\n"
        "[[prompts]]\nid = 7\nbox = [1, 1, 9, 9]\n"
        '[[streams]]\nstream_id = "door"\nsource = "synthetic://moving-shapes"\n'
        'policy = "all"\n[[streams.prompts]]\nid = 1\nbox = [10, 10, 90, 90]\n'
        '[[streams]]\nsource = "synthetic://moving-shapes?seed=1"\njitter_frames = 5\n'
    )
    parser = build_parser()
    config = run_config(parser.parse_args(["run", "--config", str(toml)]))
    assert [s.stream_id for s in config.streams] == ["door", "cam1"]
    assert [sorted(s.prompts) for s in config.streams] == [[1], [7]]
    assert [s.policy for s in config.streams] == ["all", "latest"]
    assert [s.jitter_frames for s in config.streams] == [1, 5]  # the default, its own
    assert config.tracker.num_pathways == 2
    config = run_config(parser.parse_args(["run", "--config", str(toml), "--policy", "latest"]))
    assert [s.policy for s in config.streams] == ["latest", "latest"]  # the flag wins
    config = run_config(parser.parse_args(["run", "--config", str(toml), "--jitter-frames", "3"]))
    assert [s.jitter_frames for s in config.streams] == [3, 3]
    config = run_config(parser.parse_args(["run", SYN, SYN, SYN, "--config", str(toml)]))
    assert [s.stream_id for s in config.streams] == ["cam0", "cam1", "cam2"]
    assert all(sorted(s.prompts) == [7] for s in config.streams)
    toml.write_text('[[streams]]\nsource = "a.mp4"\n[[streams]]\nstream_id = "x y"\nsource = "b"\n')
    with pytest.raises(ValueError, match="stream id must be"):
        run_config(parser.parse_args(["run", "--config", str(toml)]))
