"""WHEP egress client: the node pulls a stream from a WHEP server, reconnecting on loss."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from sam2long_stream.redact import redact_url
from sam2long_stream.sources.base import (
    EventCallback,
    FrameCallback,
    FrameSource,
    log_traceback,
)
from sam2long_stream.sources.webrtc_common import (
    Emitter,
    LoopThread,
    consume_video,
    default_ice_addresses,
    drain_track,
    one_line,
    rtc_configuration,
)

log = logging.getLogger(__name__)


class WhepError(Exception):
    """A session attempt failed for a reason worth one sentence in an "error" event."""


class WhepSource(FrameSource):
    """Pulls video over WHEP: POST a recvonly offer, play the answer, DELETE on stop.

    Any failure (refused, HTTP error, bad SDP, silence for `idle_timeout_s`) becomes an
    event and, with `reconnect`, a retry after an exponential backoff capped at
    `backoff_max_s` (reset once a session delivers video).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        reconnect: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        idle_timeout_s: float = 3.0,
        connect_timeout_s: float = 10.0,
        ice_addresses: Sequence[str] | Literal["auto"] | None = "auto",
    ) -> None:
        self.url = url
        self._safe_url = redact_url(url)  # what events and logs show
        if token and "@" in urlsplit(url).netloc:
            # both would be the Authorization header (Bearer, Basic): HTTP takes one
            raise ValueError(
                f"WHEP URL {self._safe_url}: give a token or user:password in the URL, not both"
            )
        self.token = token
        self.reconnect = reconnect
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.ice_addresses = (
            default_ice_addresses(urlsplit(url).hostname)
            if ice_addresses == "auto"
            else ice_addresses
        )
        self._loop: LoopThread | None = None
        self._emitter: Emitter | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False

    @classmethod
    def from_url(cls, url: str) -> WhepSource:
        """`whep+http://host:port/path` (or whep+https, whep://) -> a WhepSource.

        A `token` query parameter, if present, is taken out and sent as a Bearer token.
        """
        parts = urlsplit(url)
        scheme = {"whep": "http", "whep+http": "http", "whep+https": "https"}.get(parts.scheme)
        if scheme is None:
            raise ValueError(f"not a whep URL: {redact_url(url)}")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError as exc:
            raise ValueError(f"bad whep URL {redact_url(url)}: {exc}") from None
        query = parse_qsl(parts.query, keep_blank_values=True)
        token = next((v for k, v in query if k == "token"), None)
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        http_url = urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment))
        return cls(http_url, token=token)

    # -- FrameSource ------------------------------------------------------------------

    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        """Start pulling in the background; returns at once."""
        if self._loop is not None:
            return
        self._emitter = Emitter(f"whep {self._safe_url}", on_frame, on_event)
        self._loop = LoopThread("whep", self.ice_addresses)
        self._loop.start()
        self._loop.submit(self._run())

    def stop(self) -> None:
        """Cancel the pull, DELETE the session resource, join the thread (< ~3 s)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.call(self._cancel_main(), timeout=2.5)
        except Exception as exc:
            log.warning("whep %s: shutdown incomplete: %s", self._safe_url, one_line(exc))
        loop.stop(timeout=1.0)

    async def _cancel_main(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2.2)

    # -- session loop -----------------------------------------------------------------

    async def _run(self) -> None:
        assert self._emitter is not None
        em = self._emitter
        self._task = asyncio.current_task()
        attempt = 0
        try:
            while True:
                try:
                    reason = await self._session()
                except WhepError as exc:
                    em.error(str(exc))
                    reason = None
                except Exception as exc:  # aiortc surprises: one line, then retry
                    em.error(f"WHEP session with {self._safe_url} failed: {one_line(exc)}")
                    reason = None
                if self._connected:
                    em.event("disconnected", reason=reason or "session failed")
                    self._connected = False
                    attempt = 0
                elif reason is not None:
                    em.error(f"WHEP stream at {self._safe_url} failed before video: {reason}")
                em.new_session()
                if not self.reconnect:
                    em.event("eos")
                    return
                delay = min(self.backoff_max_s, self.backoff_initial_s * (2**attempt))
                attempt += 1
                em.event("reconnecting", attempt=attempt, delay_s=delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if self._connected:
                em.event("disconnected", reason="source stopped")
                self._connected = False
            raise
        except Exception as exc:  # a bug here must still end the stream (base.py contract)
            log_traceback(log, f"whep {self._safe_url}: source loop failed", exc)
            em.error(f"WHEP source {self._safe_url} failed: {one_line(exc)}")
            em.event("eos")

    async def _session(self) -> str:
        """One WHEP session, start to end; returns why it ended, raises WhepError on setup."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        assert self._emitter is not None
        pc = RTCPeerConnection(rtc_configuration())
        video: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        extra: list[asyncio.Task[Any]] = []
        resource: str | None = None

        @pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video" and not video.done():
                video.set_result(track)
            else:
                extra.append(asyncio.ensure_future(drain_track(track)))

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not ended.done():
                ended.set_result(f"peer connection {pc.connectionState}")

        try:
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            answer, resource = await self._post_offer(pc.localDescription.sdp)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            except Exception as exc:
                raise WhepError(
                    f"WHEP server at {self._safe_url} sent an unusable SDP answer ({one_line(exc)})"
                ) from None
            if not video.done():
                raise WhepError(f"WHEP server at {self._safe_url} answered without video")

            def first() -> None:
                self._connected = True

            consumer = asyncio.ensure_future(
                consume_video(
                    video.result(),
                    self._emitter,
                    self.idle_timeout_s,
                    self.connect_timeout_s,
                    first,
                    url=self._safe_url,
                )
            )
            extra.append(consumer)
            done, _ = await asyncio.wait({consumer, ended}, return_when=asyncio.FIRST_COMPLETED)
            return consumer.result() if consumer in done else ended.result()
        finally:
            for task in extra:
                task.cancel()
            if resource is not None:
                await self._delete(resource)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 1.0)

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _post_offer(self, offer: str) -> tuple[str, str | None]:
        """POST the offer; returns (answer SDP, absolute session resource URL or None)."""
        headers = self._headers(**{"Content-Type": "application/sdp", "Accept": "application/sdp"})
        timeout = aiohttp.ClientTimeout(total=self.connect_timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(self.url, data=offer.encode(), headers=headers) as resp,
            ):
                body = await resp.text()
                if resp.status >= 400:
                    raise WhepError(
                        f"WHEP server at {self._safe_url} answered HTTP {resp.status} {resp.reason}"
                    )
                if resp.status not in (200, 201):
                    raise WhepError(
                        f"WHEP server at {self._safe_url} answered unexpected HTTP {resp.status}"
                    )
                location = resp.headers.get("Location")
                resource = str(resp.url.join(URL(location))) if location else None
        except aiohttp.ClientConnectorError as exc:
            why = "connection refused" if exc.errno == errno.ECONNREFUSED else exc.strerror
            raise WhepError(f"cannot connect to WHEP server at {self._safe_url}: {why}") from None
        except TimeoutError:
            raise WhepError(
                f"WHEP server at {self._safe_url} did not answer "
                f"within {self.connect_timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise WhepError(f"WHEP request to {self._safe_url} failed: {one_line(exc)}") from None
        if "v=0" not in body:
            raise WhepError(f"WHEP server at {self._safe_url} answered without an SDP body")
        return body, resource

    async def _delete(self, resource: str) -> None:
        """Best effort: tell the server we are gone so it frees the session at once."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as http,
                http.delete(resource, headers=self._headers()) as resp,
            ):
                log.debug("whep: DELETE %s -> %s", redact_url(resource), resp.status)
        except Exception as exc:
            log.debug("whep: DELETE %s failed: %s", redact_url(resource), one_line(exc))
