"""Section ``streams``: N streams in one node process against N single-stream processes
(issue 11, "many cameras, one process, one model"): total RSS, aggregate tracked fps and
per-stream latency, both arms measured in the same bench run on the same frames.

Each arm runs real ``sam2long-stream run`` subprocesses (``python -m
sam2long_stream.cli run``) on real-time synthetic sources, and the bench receives their
masks with real ZeroMQ subscribers. See `bench_streams` for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import sam2long_stream
from sam2long_stream.benchmark.defaults import STREAMS_GOAL_N, STREAMS_GOALS
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.timing import percentiles

ARMS = ("processes", "one")  # N single-stream processes; one process with N streams
STARTUP_TIMEOUT_S = 1800.0  # N model builds + warm-up on a loaded 2-core machine
STOP_TIMEOUT_S = 120.0  # SIGTERM -> the node finishes its step, prints its summary
RSS_PERIOD_S = 0.5
_PACKAGE_ROOT = str(Path(sam2long_stream.__file__).resolve().parent.parent)


class ArmError(RuntimeError):
    """An arm that could not be measured (a node exited early, never warmed up)."""


def source_url(args: argparse.Namespace, index: int) -> str:
    """Stream `index`'s source: the synthetic scene in real time, seed = index, so both
    arms get the same frames on the same stream index (and the streams differ)."""
    width, height = args.frame_size
    return (
        f"synthetic://moving-shapes?width={width}&height={height}&fps={args.camera_fps}"
        f"&seed={index}&realtime=1"
    )


def box_prompt(args: argparse.Namespace) -> str:
    """The one ``--box`` every stream gets: the middle half of the frame."""
    width, height = args.frame_size
    return f"{width // 4},{height // 4},{3 * width // 4},{3 * height // 4}"


def node_command(
    args: argparse.Namespace,
    indices: Sequence[int],
    pub: str,
    threads: int,
    extra: Sequence[str] = (),
) -> list[str]:
    """``sam2long-stream run`` on the streams `indices` (ids cam<i>), as argv."""
    # -P: the working directory does not go first on sys.path, so the child imports the
    # package copy that PYTHONPATH names (`run_arm`), the bench's own.
    cmd = [sys.executable, "-P", "-m", "sam2long_stream.cli", "run"]
    cmd += [source_url(args, i) for i in indices]
    for i in indices:
        cmd += ["--stream-id", f"cam{i}"]
    cmd += ["--box", box_prompt(args), "--pathways", "3", "--image-size", str(args.image_size)]
    cmd += ["--policy", "latest", "--control", "off", "--pub", pub]
    cmd += ["--threads", str(threads), "--device", args.device, "--model", args.model]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    if args.compile:
        cmd.append("--compile")
    return cmd + list(extra)


def shown(cmd: Sequence[str]) -> str:
    """A command as a user would type it (``sam2long-stream run ...``)."""
    return shlex.join(["sam2long-stream", *cmd[cmd.index("sam2long_stream.cli") + 1 :]])


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held together while picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def usage(pid: int) -> tuple[int, float] | None:
    """(RSS bytes, CPU seconds) of process `pid` and its children; None once it is gone.
    psutil when installed, else /proc (the process alone)."""
    try:
        import psutil
    except ImportError:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return rss, cpu
        except (OSError, IndexError, ValueError):
            return None
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
        rss, cpu = 0, 0.0
        for p in procs:
            with p.oneshot():
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system
        return rss, cpu
    except psutil.Error:
        return None


class Collector:
    """A `Subscriber` on one node's PUB address, on its own thread (the socket lives and
    dies there), recording (stream id, capture ns, received ns) per masks message."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.records: list[tuple[str, int, int]] = []
        self.missed = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streams-sub", daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        from sam2long_stream.transport import Subscriber
        from sam2long_stream.transport.subscriber import MasksMessage

        try:
            sub = Subscriber(self.address, topics=("masks/",), hwm=10000)
        except ValueError as exc:
            self.error = str(exc)
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                msg = sub.recv(timeout_s=0.2)
                if isinstance(msg, MasksMessage):
                    self.records.append((msg.stream_id, msg.capture_time_ns, msg.received_time_ns))
            self.missed = sub.missed
        finally:
            sub.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM (the node stops after its step and prints its summary), then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(30)
    return [p.returncode for p in procs]


def run_arm(
    args: argparse.Namespace, arm: str, count: int, extra: Sequence[str], logs: Path
) -> dict[str, Any]:
    """One arm with `count` streams: start its node process(es), wait until every stream
    has delivered ``args.warmup`` masks messages, then measure for ``--streams-seconds``
    and stop them. Raises `ArmError` when a node exits early or never warms up."""
    indices = list(range(count))
    groups = [[i] for i in indices] if arm == "processes" else [indices]
    ports = free_ports(len(groups))
    if arm == "one":
        threads = args.threads
    else:
        threads = args.streams_process_threads or args.threads
        extra = ()
    cmds = [
        node_command(args, g, f"tcp://127.0.0.1:{port}", threads, extra)
        for g, port in zip(groups, ports, strict=True)
    ]
    ids = [f"cam{i}" for i in indices]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])]
    )  # the children import this very copy of the package
    collectors = [Collector(f"tcp://127.0.0.1:{port}") for port in ports]
    if errors := [c.error for c in collectors if c.error]:
        for c in collectors:
            c.close()
        raise ArmError(f"subscriber failed: {errors[0]}")
    procs: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []
    err_paths = [logs / f"{arm}-{count}-{k}.err" for k in range(len(cmds))]
    samples: list[tuple[float, int]] = []  # (t, summed RSS) in the window
    cpu0: dict[int, float] = {}
    cpu1: dict[int, float] = {}
    t_start = t_end = 0
    startup_s = 0.0
    codes: list[int | None] = []
    try:
        t_launch = time.monotonic()
        for cmd, err_path in zip(cmds, err_paths, strict=True):
            out = open(err_path.with_suffix(".out"), "wb")  # noqa: SIM115 (closed below)
            err = open(err_path, "wb")  # noqa: SIM115
            files += [out, err]
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=env))

        def check_alive(phase: str) -> None:
            for k, p in enumerate(procs):
                if p.poll() is not None:
                    streams = ", ".join(f"cam{i}" for i in groups[k])
                    raise ArmError(
                        f"the node of {streams} exited with {p.returncode} {phase}: "
                        f"{_tail(err_paths[k]) or '(no output)'}"
                    )

        # Warm-up: every stream past its first args.warmup messages (model build, prompt
        # frame, filling the memory bank; N parallel builds take longer than one).
        warm: dict[str, int] = {}
        while len(warm) < count:
            check_alive("during the warm-up")
            if time.monotonic() - t_launch > STARTUP_TIMEOUT_S:
                got = {s: sum(r[0] == s for c in collectors for r in c.records) for s in ids}
                raise ArmError(
                    f"not every stream delivered {args.warmup} masks messages within "
                    f"{STARTUP_TIMEOUT_S:.0f} s (received per stream: {got})"
                )
            time.sleep(0.2)
            for s in ids:
                if s in warm:
                    continue
                times = sorted(r[2] for c in collectors for r in list(c.records) if r[0] == s)
                if len(times) >= args.warmup:
                    warm[s] = times[args.warmup - 1]
        startup_s = time.monotonic() - t_launch
        t_start = max(warm.values())
        t_end = t_start + int(args.streams_seconds * 1e9)
        for p in procs:
            if (u := usage(p.pid)) is not None:
                cpu0[p.pid] = u[1]
        while (now := time.time_ns()) < t_end:
            check_alive("before the measured window ended")
            rss = 0
            for p in procs:
                if (u := usage(p.pid)) is not None:
                    rss += u[0]
                    cpu1[p.pid] = u[1]
            samples.append(((now - t_start) / 1e9, rss))
            time.sleep(min(RSS_PERIOD_S, max(0.0, (t_end - time.time_ns()) / 1e9)))
        time.sleep(1.0)  # the window's last messages are still on their way
    finally:
        codes = _stop(procs)
        for c in collectors:
            c.close()
        for f in files:
            f.close()

    per_stream: dict[str, dict[str, Any]] = {}
    for s in ids:
        window = [
            (cap, rec)
            for c in collectors
            for sid, cap, rec in c.records
            if sid == s and t_start < rec <= t_end
        ]
        latency = [(rec - cap) / 1e6 for cap, rec in window]
        per_stream[s] = {
            "messages": len(window),
            "fps": len(window) / args.streams_seconds,
            "latency_ms": percentiles(latency),
        }
    messages = sum(v["messages"] for v in per_stream.values())
    p95 = [v["latency_ms"]["p95"] for v in per_stream.values() if v["latency_ms"]]
    cpu_s = sum(cpu1[pid] - cpu0[pid] for pid in cpu1 if pid in cpu0)
    return {
        "arm": arm,
        "streams": count,
        "processes": len(procs),
        "commands": [shown(c) for c in cmds],
        "startup_s": round(startup_s, 2),
        "window_s": args.streams_seconds,
        "messages": messages,
        "aggregate_fps": messages / args.streams_seconds,
        "per_stream": per_stream,
        "p95_spread": (max(p95) / min(p95)) if len(p95) == count and min(p95) > 0 else None,
        "rss_bytes_max": max((r for _, r in samples), default=None),
        "rss_bytes_end": samples[-1][1] if samples else None,
        "rss_samples": len(samples),
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_frame": 1e3 * cpu_s / messages if messages else None,
        "missed_messages": sum(c.missed for c in collectors),
        "exit_codes": codes,
        "error": None,
    }


def _judged(device: str, count: int) -> dict[str, tuple[str, float] | None]:
    """Which goals apply to the N=`count` row on `device`: (comparison, goal) or None.
    CPU goals are the issue's 4-stream goals; the GPU goal is for 8 streams."""
    gpu = device.startswith("cuda")
    on_cpu = not gpu and count == STREAMS_GOAL_N["cpu"]
    on_gpu = gpu and count == STREAMS_GOAL_N["gpu"]
    fps_goal = (
        (">=", STREAMS_GOALS["gpu_fps_ratio"])
        if on_gpu
        else (">=", STREAMS_GOALS["fps_ratio"])
        if on_cpu
        else None
    )
    return {
        "rss_ratio": ("<=", STREAMS_GOALS["rss_ratio"]) if on_cpu else None,
        "fps_ratio": fps_goal,
        "p95_spread": ("<=", STREAMS_GOALS["p95_spread"]) if on_cpu else None,
    }


def compare(
    device: str, count: int, procs: dict[str, Any] | None, one: dict[str, Any] | None
) -> dict[str, Any]:
    """Ratios of the one-process arm to the N-process arm, and verdicts where a goal
    applies (PASS/MISS; "info" where none; "n/a" when an arm has no figure)."""
    ok_p = procs is not None and procs["error"] is None
    ok_o = one is not None and one["error"] is None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    ratios = {
        "rss_ratio": ratio(one["rss_bytes_max"], procs["rss_bytes_max"])
        if ok_p and ok_o and one and procs
        else None,
        "fps_ratio": ratio(one["aggregate_fps"], procs["aggregate_fps"])
        if ok_p and ok_o and one and procs
        else None,
        "p95_spread": one["p95_spread"] if ok_o and one else None,
    }
    goals = _judged(device, count)
    verdicts: dict[str, str] = {}
    for key, value in ratios.items():
        goal = goals[key]
        if goal is None:
            verdicts[key] = "info" if value is not None else "n/a"
        elif value is None:
            verdicts[key] = "n/a"
        else:
            op, g = goal
            verdicts[key] = "PASS" if (value <= g if op == "<=" else value >= g) else "MISS"
    return {
        "ratios": ratios,
        "goals": {k: None if v is None else f"{v[0]} {v[1]}x" for k, v in goals.items()},
        "verdicts": verdicts,
    }


def bench_streams(args: argparse.Namespace, _scene: Scene) -> dict[str, Any]:
    """N streams in one node process against N single-stream processes.

    For each N in ``--streams-counts`` (default 1,2,4) and each arm in ``--streams-arms``:

    * ``processes``: N ``sam2long-stream run SRC --stream-id cam<i>`` processes, each with
      its own model and its own ``--pub`` port;
    * ``one``: one ``sam2long-stream run SRC0 ... SRC<N-1>`` process (one model, the
      multi-stream node), ``--stream-id`` cam0..cam<N-1>, plus ``--streams-node-args``
      (e.g. ``--max-batch 4 --max-wait 0.02``).

    Every node: P=3, ``--image-size``, policy latest, the same ``--box`` on every stream,
    ``--control off``, ``--device``, ``--model``; ``--threads`` torch threads for the one
    process, ``--streams-process-threads`` (default: the same) for each of the N. Stream
    i's source is ``synthetic://moving-shapes`` at ``--frame-size`` and ``--camera-fps``
    in real time with seed i, in both arms. The arms run one after the other (never at
    once), processes first.

    A `Subscriber` per node process in the bench's process records every masks message.
    Warm-up: the window starts when the last stream has delivered its ``--warmup``-th
    message (model builds take longer with N of them); it lasts ``--streams-seconds``.
    Aggregate tracked fps = masks messages received in the window / its length; latency
    per stream = subscriber receive time - the message's ``capture_time_ns`` (the source's
    wall clock when the frame was made), p50/p95/max; p95 spread = slowest / fastest
    stream's p95. RSS: the sum over the arm's processes (and their children) sampled every
    0.5 s in the window; the figure compared is the largest sum (``rss_bytes_max``), the
    last one is reported too. CPU: user + system seconds of the processes in the window.
    """
    counts: list[int] = args.streams_counts
    arms: list[str] = args.streams_arms
    extra = shlex.split(args.streams_node_args)
    out: dict[str, Any] = {
        "seconds": args.streams_seconds,
        "counts": counts,
        "arms": arms,
        "warmup": args.warmup,
        "source": source_url(args, 0).replace("seed=0", "seed=<i>"),
        "box": box_prompt(args),
        "pathways": 3,
        "image_size": args.image_size,
        "threads": {
            "processes": args.streams_process_threads or args.threads,
            "one": args.threads,
        },
        "node_args": extra,
        "goals": dict(STREAMS_GOALS),
        "goal_streams": dict(STREAMS_GOAL_N),
        "rss": "max of the summed RSS of the arm's processes, sampled every 0.5 s in the window",
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        for count in counts:
            row: dict[str, Any] = {"streams": count}
            for arm in ARMS:
                if arm not in arms:
                    row[arm] = None
                    continue
                print(f"  streams: N={count}, {arm} ...", flush=True)
                try:
                    row[arm] = run_arm(args, arm, count, extra, Path(tmp))
                except ArmError as exc:
                    row[arm] = {"arm": arm, "streams": count, "error": str(exc)}
            row.update(compare(args.device, count, row["processes"], row["one"]))
            out["rows"].append(row)
    return out
