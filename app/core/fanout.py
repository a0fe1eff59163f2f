"""One Redis pub/sub subscription per API process for all of its SSE streams.

A `Hub` (one per event loop) holds a single pattern subscription to this installation's channels and
rings a `Bell` per channel that somebody follows. A `Feed` turns a bell into data for every client of
one job: one task reads what is new ONCE and puts it into each client's bounded buffer; a client whose
buffer is full is dropped (its stream ends, and it reconnects with Last-Event-ID), so a slow reader
never holds up the others.

Pub/sub stays a doorbell: with no message for POLL_SECONDS a feed reads anyway, so a lost publish, a
Redis outage or a restart delays an event but never drops, repeats or invents one. The listener and
the feeds are asyncio tasks that outlive the request that started them; they stop with their last
client.
"""

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.exceptions import RedisError

from app.core.redis import channel_prefix, get_async_redis

log = logging.getLogger("app.backend")

POLL_SECONDS = 2.0
PAGE = 1000  # events per read (app/core/events.py events_after): a full page means read on
CLIENT_BUFFER = 64  # reads (each a batch of up to 1,000 events) a client may lag behind before it is dropped


class Batch(Protocol):
    """One read of a feed, shared by all its clients: events (each with a "seq") that follow the
    feed's position, and the seq that ends the feed once known."""

    events: list[dict[str, Any]]
    final_seq: int | None


B = TypeVar("B", bound=Batch)


class Bell:
    """Rings when a message lands on its channel; `wait` returns at once if it rang since `seen`."""

    def __init__(self) -> None:
        self.rings = 0
        self.users = 0
        self.echoes: set[Bell] = set()  # bells that ring with this one (`Hub.any_of`)
        self._rang = anyio.Event()

    def ring(self) -> None:
        self.rings += 1
        self._rang.set()
        self._rang = anyio.Event()
        for echo in self.echoes:
            echo.ring()

    async def wait(self, seen: int, timeout: float = POLL_SECONDS) -> int:
        if self.rings == seen:
            with anyio.move_on_after(timeout):
                await self._rang.wait()
        return self.rings


class Client(Generic[B]):
    """One SSE stream's end of a feed: a bounded buffer of batches, in order."""

    def __init__(self) -> None:
        self.inbox: MemoryObjectSendStream[B]
        self.outbox: MemoryObjectReceiveStream[B]
        self.inbox, self.outbox = anyio.create_memory_object_stream[B](CLIENT_BUFFER)

    def offer(self, batch: B) -> bool:
        """False (and the buffer closed) when the client is too far behind."""
        try:
            self.inbox.send_nowait(batch)
            return True
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.inbox.close()
            return False

    async def receive(self, timeout: float = POLL_SECONDS) -> list[B] | None:
        """What arrived (waiting up to `timeout` for the first); None once the client was dropped."""
        items: list[B] = []
        try:
            with anyio.move_on_after(timeout):
                items.append(await self.outbox.receive())
            while True:
                items.append(self.outbox.receive_nowait())
        except anyio.WouldBlock:
            return items
        except anyio.EndOfStream:
            return items or None


class Feed(Generic[B]):
    """Follows the ordered items (each with a "seq") of one channel for all its clients here."""

    def __init__(
        self,
        hub: "Hub",
        channel: str,
        start: Callable[[], Awaitable[int]],
        load: Callable[[int], Awaitable[B]],
    ) -> None:
        self.hub = hub
        self.channel = channel
        self.start = start
        self.load = load
        self.clients: set[Client[B]] = set()
        self.started = anyio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self.hub.bell(self.channel) as bell:
                seen = bell.rings
                last = await self.start()  # after the bell is live: a later event will ring it
                self.started.set()
                while True:
                    seen = await bell.wait(seen)
                    while True:
                        batch = await self.load(last)
                        if batch.events or batch.final_seq is not None:
                            self._offer(batch)
                        if batch.events:
                            last = batch.events[-1]["seq"]
                        if len(batch.events) < PAGE:
                            break
        except Exception:
            log.exception("feed of %s failed; its clients reconnect", self.channel)
        finally:
            self.started.set()
            for client in self.clients:
                client.inbox.close()

    def _offer(self, batch: B) -> None:
        for client in list(self.clients):
            if not client.offer(batch):
                log.info("SSE client of %s dropped: too far behind", self.channel)
                self.clients.discard(client)


class Hub:
    def __init__(self) -> None:
        self.bells: dict[str, Bell] = {}
        self.feeds: dict[tuple[str, Hashable], Feed[Any]] = {}
        self.listener: asyncio.Task[None] | None = None
        self.ready = anyio.Event()

    @asynccontextmanager
    async def bell(self, channel: str) -> AsyncIterator[Bell]:
        """The channel's bell, rung by the process's one subscription (started on first use)."""
        bell = self.bells.setdefault(channel, Bell())
        bell.users += 1
        if self.listener is None:
            self.ready = anyio.Event()
            self.listener = asyncio.create_task(self._listen(self.ready))
        try:
            with anyio.move_on_after(POLL_SECONDS):  # Redis down: the bell only times out meanwhile
                await self.ready.wait()
            yield bell
        finally:
            bell.users -= 1
            if not bell.users and self.bells.get(channel) is bell:
                del self.bells[channel]
            if not self.bells and self.listener is not None:
                self.listener.cancel()
                self.listener = None

    @asynccontextmanager
    async def any_of(self, channels: list[str]) -> AsyncIterator[Bell]:
        """One bell that rings when any of the channels' bells does (a list page follows many jobs)."""
        combined = Bell()
        async with AsyncExitStack() as stack:
            for channel in channels:
                bell = await stack.enter_async_context(self.bell(channel))
                bell.echoes.add(combined)
                stack.callback(bell.echoes.discard, combined)
            yield combined

    @asynccontextmanager
    async def follow(
        self,
        channel: str,
        source: Hashable,
        start: Callable[[], Awaitable[int]],
        load: Callable[[int], Awaitable[B]],
    ) -> AsyncIterator[Client[B]]:
        """A client of the channel's feed (one per channel and `source`, e.g. the database), live once
        this returns: read the past after entering, and nothing published afterwards is missed."""
        key = (channel, source)
        feed = self.feeds.get(key)
        if feed is None or feed.task.done():
            feed = self.feeds[key] = Feed(self, channel, start, load)
        client: Client[B] = Client()
        feed.clients.add(client)
        try:
            await feed.started.wait()
            yield client
        finally:
            feed.clients.discard(client)
            client.inbox.close()
            client.outbox.close()
            if not feed.clients:
                feed.task.cancel()
                if self.feeds.get(key) is feed:
                    del self.feeds[key]

    async def _listen(self, ready: anyio.Event) -> None:
        pattern = f"{channel_prefix()}*"
        while True:
            redis = get_async_redis()
            pubsub = redis.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                async for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        ready.set()
                        for bell in list(self.bells.values()):  # whatever happened while deaf
                            bell.ring()
                    elif message["type"] == "pmessage":
                        rung = self.bells.get(message["channel"].decode())
                        if rung is not None:
                            rung.ring()
            except (RedisError, OSError):
                log.warning("SSE fan-out: Redis unavailable, streams poll the database meanwhile")
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await pubsub.aclose()
                        await redis.aclose()
                    except (RedisError, OSError):
                        pass
            await anyio.sleep(POLL_SECONDS)


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (an API process has one loop, so one subscription)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
