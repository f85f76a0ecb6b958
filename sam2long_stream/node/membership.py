"""Streams joining and leaving the node: built (at start or by add_stream), started,
and ended for good (end of source, max_frames, remove_stream, shutdown).

Ids are reserved on the control thread while a new stream is built, so two requests
never take one id; the loop then adds, starts and ends streams between ticks.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sam2long_stream.limits import quote
from sam2long_stream.node.base import log, one_line
from sam2long_stream.node.commands import Command
from sam2long_stream.node.events import publish_events
from sam2long_stream.node.snapshots import Snapshots, listed
from sam2long_stream.node.stream import Stream
from sam2long_stream.settings import StreamConfig

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker

KEEP_REMOVED = 256  # removed streams whose summaries the node keeps (the oldest go first)
KEEP_LATENCIES = 1000  # of each removed stream's latencies, for the node's percentiles


def overlay_paths(config: StreamConfig, several: bool) -> StreamConfig:
    """With several streams, a shared overlay path gets the stream id before its
    extension (``out.mp4`` -> ``out.cam1.mp4``) so streams never write one file."""
    if not several:
        return config
    changes: dict[str, Any] = {}
    for name in ("overlay_out", "overlay_png"):
        path = getattr(config, name)
        if path:
            stem, dot, ext = path.rpartition(".")
            changes[name] = (
                f"{stem}.{config.stream_id}.{ext}"
                if dot and "/" not in ext
                else (f"{path}.{config.stream_id}")
            )
    if not changes:
        return config
    return dataclasses.replace(config, **changes)


class Membership(Snapshots):
    """Adding and ending streams (see the module docstring)."""

    def new_tracker(self) -> Tracker:
        """A tracker for one more stream, sharing the first one's engine (one model)."""
        from sam2long_stream.tracker.tracker import Tracker

        assert self._tracker is not None
        return Tracker(self._tracker.config, engine=self._tracker.engine)

    def new_stream(self, config: StreamConfig) -> Stream:
        """A stream for add_stream: its source opened (not started), a tracker on the
        shared engine, the page's endpoints. ValueError/OSError for a bad source."""
        stream = Stream(config, self.new_tracker(), self._wake, node=self.config)
        stream.attach_page(*self.page_sockets)
        return stream

    def reserve_stream_id(self, stream_id: str | None) -> str:
        """Hold ``stream_id`` (or the first free ``camN``) for a stream being built;
        ValueError when it is taken. `release_stream_id` if the stream is not built."""
        with self._lock:
            taken = set(self._streams) | self._reserved
            cap = self.config.max_streams
            if len(taken) >= cap:
                raise ValueError(
                    f"the node holds {len(taken)} streams, max_streams is {cap}: remove one "
                    "first (an ended stream counts until it is removed); nothing changed"
                )
            sid = stream_id
            if sid is None:
                sid = next(f"cam{i}" for i in range(len(taken) + 1) if f"cam{i}" not in taken)
            elif sid in self._removing:
                raise ValueError(
                    f"stream {sid!r} is being removed; add it again once status no longer "
                    "names it (retry in a moment); nothing changed"
                )
            elif sid in taken:
                raise ValueError(f"stream {sid!r} exists already; nothing changed")
            self._reserved.add(sid)
        return sid

    def release_stream_id(self, stream_id: str) -> None:
        with self._lock:
            self._reserved.discard(stream_id)

    def mark_removing(self, stream_id: str) -> None:
        """Hide a stream from requests and snapshots until the loop removes it;
        ValueError for an unknown stream (or one already being removed)."""
        with self._lock:
            if stream_id in self._removing:
                raise ValueError(f"stream {stream_id!r} is being removed already")
            if stream_id not in self._streams:
                ids = list(self._streams)
                raise ValueError(f"unknown stream {quote(stream_id)}; streams: {listed(ids)}")
            self._removing.add(stream_id)

    def _remove_stream(self, s: Stream) -> None:
        """End a stream (if it has not ended by itself) and forget it; its final summary
        stays for the node's (marked removed). Only then is its id free again."""
        self._finish_stream(s, removed=True)
        final = s.summary()
        summary = dataclasses.replace(
            final, removed=True, latencies=final.latencies[-KEEP_LATENCIES:]
        )
        with self._lock:
            self._removed.append(summary)
            if len(self._removed) > KEEP_REMOVED:
                del self._removed[0]
                self._removed_untold += 1
            del self._streams[s.id]
            self._removing.discard(s.id)

    def _all_ended(self) -> bool:
        """Every stream ended by itself (end of file, max_frames). A node whose streams
        were all removed over the control socket waits for add_stream instead."""
        streams = self._loop_streams()
        return bool(streams) and all(s.finished for s in streams)

    def _end_streams(self) -> None:
        for s in self._loop_streams():
            if s.finished:
                continue
            limit = s.config.max_frames
            if s.ended or (limit is not None and s.frames_taken() >= limit):
                self._finish_stream(s)

    def _add_stream(self, cmd: Command) -> None:
        s: Stream = cmd.payload
        if self._stop.is_set():
            raise ValueError("the node is stopping; nothing changed")
        with self._lock:
            self._streams[s.id] = s
            self._reserved.discard(s.id)
        try:
            self._start_stream(s)
        except Exception as exc:
            self._publish_status(s, "error", error=one_line(exc))
            self._finish_stream(s)
            with self._lock:
                del self._streams[s.id]
            raise ValueError(f"stream {s.id} could not start: {one_line(exc)}") from None
        log.info("stream %s added: %s", s.id, s.name)
        cmd.finish({"stream": s.id, "source": s.name, "started": True})

    def _start_stream(self, s: Stream) -> None:
        self._publish_status(s, "starting", source=s.name)
        try:
            s.start()
        except Exception as exc:
            with self._lock:
                alone = len(self._streams) == 1
            if alone or not s.initial:
                raise
            # one of several configured streams: report it, the others go on
            log.error("stream %s: the source did not start: %s", s.id, one_line(exc))
            self._publish_status(s, "error", error=one_line(exc))
            self._finish_stream(s)

    def _finish_stream(self, s: Stream, removed: bool = False) -> None:
        """Stop a stream for good: its source, its lagged tail, its held prompts, its
        overlay; then its final status (``stopped`` with its summary)."""
        if s.finished:
            return
        s.finished = True
        try:
            s.source.stop()
        except Exception as exc:
            log.warning("stream %s: stopping the source failed: %s", s.id, one_line(exc))
        s.queue.close()
        if s.tracker.config.lag > 0 and self._fatal is None:
            try:
                for result in s.tracker.flush():
                    self._publish_lagged(s, result)
            except Exception as exc:
                log.error("stream %s: flushing lagged results failed: %s", s.id, one_line(exc))
        why = "the stream was removed" if removed else "the node stopped"
        for cmd in s.held:
            cmd.finish(error=f"{why} before a frame arrived")
        s.held = []
        s.sync_held()
        if s.overlay is not None:
            try:
                s.overlay.close()
            except Exception as exc:
                log.error("stream %s: finishing the overlay failed: %s", s.id, one_line(exc))
        with s.lock:
            if self._publisher is not None:
                s.stats.dropped_messages = self._publisher.dropped_by_stream.get(s.id, 0)
        ended = "stream_removed" if removed else "stream_ended"
        publish_events(self._publisher, s, s.tracks.end(None, ended))
        fatal = self._fatal is not None and self._may_fail_fast(s)
        if fatal:
            s.set_last_error(str(self._fatal))  # before the state: never error without why
        s.set_state("error" if fatal else "stopped")
        final = s.summary().as_dict()
        final.pop("stream_id", None)
        if fatal:
            self._publish_status(s, "error", error=self._fatal, **final)
        self._publish_status(s, "stopped", **final)
