"""The supervisor loop: start each shard's node process, restart it with a capped
backoff, kill it when all its streams went silent, stop them all on a signal, and keep
the table, logs and endpoints fed.

Not thread-safe: a Launcher runs on the thread that calls `run` (the main thread when
it handles signals: PR_SET_PDEATHSIG follows the thread that spawned the node).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

import zmq

from sam2long_stream import security
from sam2long_stream.health import HealthServer
from sam2long_stream.redact import redact_text
from sam2long_stream.supervisor import endpoints
from sam2long_stream.supervisor.config import LaunchConfig, LaunchError
from sam2long_stream.supervisor.node_files import PROG, node_argv, spawn_argv, write_node_file
from sam2long_stream.supervisor.proxy import Proxy, Upstream, connect_upstreams
from sam2long_stream.supervisor.state import ShardProcess, StreamState
from sam2long_stream.supervisor.table import format_table
from sam2long_stream.transport import wire

log = logging.getLogger("sam2long_stream.supervisor")


class _RecentHandler(logging.Handler):
    """The launcher's own log lines, kept for the terminal table's tail."""

    def __init__(self, sink: collections.deque[str]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"[launch] {record.getMessage()}")


class Launcher:
    """Runs the shards of one launch file; see the package docstring."""

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
            try:
                _, host = security.http_endpoint(http)
            except ValueError as exc:
                raise LaunchError(f"--http: {exc}") from None
            if security.reachable_from_outside(host) and not self.opts["allow_remote"]:
                raise LaunchError(
                    f"--http {http} is reachable from other hosts; set allow_remote = true "
                    "in [launcher] to mean it"
                )
            self.opts["http"] = http
        self.table = table
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.shards: dict[str, ShardProcess] = {s.shard_id: ShardProcess(s) for s in config.shards}
        self.streams: dict[str, StreamState] = {
            s.stream_id: StreamState(s.stream_id, self.shards[s.shard_id], s.source)
            for s in config.streams
        }
        self.proxy: Proxy | None = None
        self.http_server: HealthServer | None = None
        self.http_endpoint: str | None = None
        self._registry = endpoints.registry(endpoints.LaunchCollector(self._snapshot))
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
        """First call: stop every shard gracefully; a second one kills them at once."""
        self._signals += 1

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    # -- running ------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until a signal (exit 0) or until every shard is done for good (0 when
        all exited 0, else 1). Always stops every node process and reaps it."""
        try:
            self._setup()
            self._loop()
        finally:
            self._shutdown()
        failed = [s for s in self.shards.values() if s.exit_code not in (0, None)]
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
            self._run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            self._run_dir = Path(tempfile.mkdtemp(prefix="sam2long-launch-"))  # 0700
            self._own_run_dir = True
        if self.opts["log_dir"]:
            Path(self.opts["log_dir"]).mkdir(parents=True, exist_ok=True)
        for shard in self.config.shards:
            write_node_file(self._run_dir, shard, self.config.path)
        client = None
        if self.opts["curve_secret"]:
            client = security.load_secret(self.opts["curve_secret"], "[launcher] curve_secret")
        nodes = [
            Upstream(
                security.connect_address(s.pub),
                security.load_public(s.curve_secret, f"shard {s.shard_id} curve_secret")
                if s.curve_secret
                else None,
            )
            for s in self.config.shards
        ]
        proxy = self.config.proxy
        remote: list[Upstream] = []
        if proxy is not None:
            server = None
            if proxy.upstream_curve_server:
                server = security.load_public(proxy.upstream_curve_server, "upstream_curve_server")
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
            for shard in list(self.shards.values()):
                self._supervise(shard, now)
            if self.table and now >= next_table:
                self._print_table(now)
                next_table = now + self.opts["table_interval_s"]
            if self._all_done():
                log.info("every shard is done")
                return
            if poller.poll(100):
                self._drain_status()

    def _all_done(self) -> bool:
        if not self.shards:
            return False  # a fan-in proxy runs until stopped
        return all(not s.running and s.next_start_t is None for s in self.shards.values())

    def _supervise(self, shard: ShardProcess, now: float) -> None:
        proc = shard.proc
        if proc is not None and proc.poll() is not None:
            self._exited(shard, proc.returncode, now)
        if shard.proc is None and shard.next_start_t is not None and now >= shard.next_start_t:
            self._spawn(shard, now)
        elif shard.running and self.opts["hang_timeout_s"] > 0 and shard.status_t is not None:
            silent = now - shard.status_t
            if silent > self.opts["hang_timeout_s"]:
                log.warning(
                    "%s: no status from any of its streams for %.0f s; killing the hung node",
                    shard.shard_id,
                    silent,
                )
                assert shard.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    shard.proc.kill()

    def _spawn(self, shard: ShardProcess, now: float) -> None:
        spec = shard.spec
        assert self._run_dir is not None
        argv = spawn_argv(node_argv(spec, str(self._run_dir / f"{spec.shard_id}.toml")))
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
            log.error("%s: cannot start the node: %s", spec.shard_id, exc)
            shard.exit_code = 127
            self._schedule_restart(shard, now)
            return
        with self._lock:
            if shard.started_t is not None:
                shard.restarts += 1
            shard.proc, shard.started_t, shard.exit_code = proc, now, None
            shard.pids.append(proc.pid)
            shard.status_t = None
            for stream in self._streams_of(shard):
                stream.forget()
        log.info(
            "%s: started node pid %d for %s on %s%s",
            spec.shard_id,
            proc.pid,
            ", ".join(spec.stream_ids),
            spec.device,
            f" (restart {shard.restarts})" if shard.restarts else "",
        )
        shard.reader = threading.Thread(
            target=self._pump_log, args=(shard, proc), name=f"log-{spec.shard_id}", daemon=True
        )
        shard.reader.start()

    def _streams_of(self, shard: ShardProcess) -> list[StreamState]:
        return [self.streams[sid] for sid in shard.spec.stream_ids]

    def _exited(self, shard: ShardProcess, code: int, now: float) -> None:
        spec = shard.spec
        up = now - (shard.started_t or now)
        with self._lock:
            shard.proc, shard.exit_code = None, code
        if shard.reader is not None:
            shard.reader.join(2.0)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        last = shard.tail[-1] if shard.tail else ""
        failed = code != 0
        if spec.restart == "never" or (spec.restart == "on-failure" and not failed):
            log.log(logging.WARNING if failed else logging.INFO,
                    "%s: node exited (%s) after %.0f s; not restarting%s",
                    spec.shard_id, how, up, f": {last}" if failed and last else "")  # fmt: skip
            shard.next_start_t = None
            return
        if up >= self.opts["restart_reset_after_s"]:
            shard.failures = 0
        delay = self._schedule_restart(shard, now)
        log.warning(
            "%s: node exited (%s) after %.0f s; restarting in %.1f s%s",
            spec.shard_id, how, up, delay, f" (last output: {last})" if last else "",
        )  # fmt: skip

    def _schedule_restart(self, shard: ShardProcess, now: float) -> float:
        """Capped exponential backoff over consecutive failures."""
        shard.failures += 1
        base, cap = self.opts["restart_delay_s"], self.opts["restart_max_delay_s"]
        delay = min(cap, base * 2 ** max(0, shard.failures - 1))
        shard.next_start_t = now + delay
        return delay

    def _pump_log(self, shard: ShardProcess, proc: subprocess.Popen[bytes]) -> None:
        """Copy a node's output, secrets masked: prefixed to stderr (or its log file),
        last lines kept for the table and the exit message."""
        assert proc.stdout is not None
        sink: IO[str] | None = None
        if self.opts["log_dir"]:
            path = Path(self.opts["log_dir"]) / f"{shard.shard_id}.log"
            sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            for raw in proc.stdout:
                line = redact_text(raw.decode("utf-8", "replace").rstrip())
                shard.tail.append(line)
                self._recent.append(f"[{shard.shard_id}] {line}")
                if sink is not None:
                    sink.write(line + "\n")
                    sink.flush()
                elif self._echo_logs:
                    with self._write_lock:
                        self.err.write(f"[{shard.shard_id}] {line}\n")
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
                stream = self.streams.get(msg.stream_id)
                if stream is None:  # a stream of an upstream proxy
                    stream = self.streams[msg.stream_id] = StreamState(msg.stream_id)
                if stream.shard is not None and not stream.shard.running:
                    continue  # the last words of a node already reaped
                stream.update(msg.state, msg.header, now)

    # -- output -------------------------------------------------------------------------

    def rows(self, now: float | None = None) -> list[dict[str, Any]]:
        """One row per stream: the table, /healthz and /metrics all read these."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [s.row(now) for s in list(self.streams.values())]

    def shard_rows(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.monotonic() if now is None else now
        with self._lock:
            return [s.row(now) for s in self.shards.values()]

    def _print_table(self, now: float) -> None:
        where = self.proxy.endpoint if self.proxy is not None else "each shard's pub"
        n, m = len(self.config.streams), len(self.config.shards)
        header = (
            f"{PROG} {self.config.path}: {n} stream{'' if n == 1 else 's'} in {m} "
            f"shard{'' if m == 1 else 's'}, subscribers connect to {where}  "
            f"[{time.strftime('%H:%M:%S')}]"
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
        its shard). Ready: every local stream has reported status once (its shard's
        model is loaded), which is what a rollout should wait for."""
        now = time.monotonic()
        loop_ok = now - self._tick_t < 10.0
        proxy_ok = self.proxy is None or self.proxy.alive
        rows = self.rows(now)
        with self._lock:
            ready = loop_ok and proxy_ok and all(s.seen for s in self.streams.values() if s.local)
        body = {
            "ok": loop_ok and proxy_ok,
            "ready": ready,
            "proxy": None if self.proxy is None else self.proxy.endpoint,
            "shards": self.shard_rows(now),
            "streams": rows,
        }
        return loop_ok and proxy_ok, ready, body

    def _snapshot(self) -> tuple[bool, bool, list[dict[str, Any]], list[dict[str, Any]]]:
        alive, ready, body = self.health()
        return alive, ready, body["streams"], body["shards"]

    def metrics(self) -> bytes:
        """Prometheus text format (prometheus_client), one series per stream and shard."""
        return endpoints.render(self._registry)

    def _start_http(self, address: str) -> None:
        host, port = security.parse_http_address(address)

        def alive() -> tuple[bool, dict[str, Any]]:
            ok, _, body = self.health()
            return ok, body

        def ready() -> tuple[bool, dict[str, Any]]:
            _, ok, body = self.health()
            return ok, body

        self.http_server = HealthServer(host, port, alive, self.metrics, ready=ready).start()
        self.http_endpoint = f"{host}:{self.http_server.port}"
        log.info("http: /healthz /readyz /metrics on %s", self.http_endpoint)

    # -- shutdown -----------------------------------------------------------------------

    def _shutdown(self) -> None:
        live = [s for s in self.shards.values() if s.running]
        for shard in live:
            assert shard.proc is not None
            with contextlib.suppress(ProcessLookupError):
                shard.proc.terminate()
        deadline = time.monotonic() + self.opts["stop_timeout_s"]
        killed = self._signals >= 2
        while any(s.running for s in live):
            if not killed and (time.monotonic() >= deadline or self._signals >= 2):
                for shard in live:
                    if shard.running:
                        log.warning("%s: still running; killing it", shard.shard_id)
                        assert shard.proc is not None
                        with contextlib.suppress(ProcessLookupError):
                            shard.proc.kill()
                killed = True
            time.sleep(0.05)
        for shard in live:
            assert shard.proc is not None
            code = shard.proc.wait()
            if shard.reader is not None:
                shard.reader.join(2.0)
            with self._lock:
                shard.exit_code, shard.proc = code, None
                shard.next_start_t, shard.stopped = None, True
            log.info("%s: node stopped (exit %s)", shard.shard_id, code)
        for shard in self.shards.values():
            shard.next_start_t = None
        if self.table:
            self._print_table(time.monotonic())
        if self.http_server is not None:
            self.http_server.stop()
        if self._sub is not None:
            self._sub.close(linger=0)
        if self.proxy is not None:
            self.proxy.stop()
        self._ctx.term()
        if self._own_run_dir and self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
