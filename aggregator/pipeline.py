"""The only place that calls the stages in order.

One cycle (``run_cycle``)::

    poll_feeds:   LoadedConfig ─▶ store.feed_states ─▶ polling.is_due ─▶ fetch.Fetcher.fetch
                  ─▶ parse.parse_feed (parse workers) ─▶ polling.advance_state ─▶ store.save_polls
    collapse_duplicates: store.entries_without_signature ─▶ dedupe.find_duplicates (against the
                  index of stored signatures) ─▶ store.save_duplicates (verdicts with signatures)
    group_into_stories:  recent entries ─▶ stories.group_stories ─▶ topics.assign_topics
                  ─▶ store.save_stories; then, when the topics in feeds.yaml changed,
                  relabel_stories: store.story_pages ─▶ topics.configured_topics
                  ─▶ store.save_story_topics (a transaction per page) ─▶ store.set_meta_value
    publish_output:      snapshot.read_snapshot ─▶ publish.publish_feeds (public/feed.*)

Digests follow a cycle, outside it (``newsletters.run_due_newsletters``, from the same
snapshot builder): see ``run_cycle``.  So does retention, last::

    prune_entries:       store.latest_issue (each newsletter) ─▶ retention.retention_cutoff
                  ─▶ store.aged_entries + store.duplicate_map ─▶ retention.removable_groups
                  ─▶ store.remove_entries (a transaction per chunk of whole copy groups)

Fetches run concurrently on one event loop (the fetcher enforces the global and per-host
limits); parsing is CPU-bound, so with many feeds it runs in worker processes
(``parsepool``) to use both cores; writes go through one writer thread, which batches the
polls that finish together into one transaction (``Store.save_polls``), in which each
feed's results still land whole or not at all, and the event loop never waits on the
database.  A feed that fails becomes a ``PollOutcome`` with an error: nothing here lets
one feed's problem stop the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aggregator import fetch, polling, retention
from aggregator.config import Config, FeedConfig, LoadedConfig, PollingConfig
from aggregator.errors import DatabaseUnavailable, OutputError, StoreError
from aggregator.parsepool import ParseOutcome, ParsePool
from aggregator.store import SaveCounts, Store
from aggregator.urls import without_password

if TYPE_CHECKING:
    from aggregator.dedupe import DedupeSettings
    from aggregator.publish import PublishResult
    from aggregator.stories import Story, StorySettings
    from aggregator.topics import TopicRule

from aggregator.types import (
    AgedEntry,
    DuplicateEvidence,
    Entry,
    FeedState,
    FeedStatus,
    FetchResult,
    PollOutcome,
    PollSummary,
    PruneReport,
    StoredEntry,
)

log = logging.getLogger(__name__)

# Below this many feeds to parse, a second worker costs more than it saves.  There is always
# one: a feed the parser chokes on (quadratic time, a crash) then costs that feed, after
# PARSE_TIMEOUT_S, not the whole poll, and a large feed never blocks the event loop.
PARALLEL_PARSE_THRESHOLD = 16
PARSE_WORKERS = max(1, min(2, os.cpu_count() or 1))
# Feeds with a body between fetched and stored, per parser: enough to keep each one busy.
PARSE_BACKLOG_PER_WORKER = 4


def fetch_settings(polling_config: PollingConfig) -> fetch.FetchSettings:
    return fetch.FetchSettings(
        max_bytes=polling_config.max_response_size,
        connect_timeout=polling_config.connect_timeout.total_seconds(),
        read_timeout=polling_config.read_timeout.total_seconds(),
        total_timeout=polling_config.timeout.total_seconds(),
        max_redirects=polling_config.max_redirects,
        concurrency=polling_config.concurrency,
        per_host=polling_config.per_host,
    )


def polling_policy(polling_config: PollingConfig, feed: FeedConfig) -> polling.PollingPolicy:
    return polling.PollingPolicy(
        interval=feed.interval or polling_config.interval,
        min_interval=polling_config.min_interval,
        max_interval=polling_config.max_interval,
        max_retry_after=polling_config.max_retry_after,
        unconditional_every=polling_config.unconditional_every,
    )


async def poll_feeds(
    loaded: LoadedConfig,
    store: Store,
    now: datetime,
    *,
    only_due: bool = False,
    on_outcome: Callable[[PollOutcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    rng: random.Random | None = None,
) -> PollSummary:
    """Fetch, parse and store every enabled feed (or only those due at ``now``)."""
    feeds = loaded.enabled_feeds
    store.sync_feeds([(f.url, f.title) for f in feeds])
    states = {s.url: s for s in store.feed_states([f.url for f in feeds])}
    selected = [f for f in feeds if not only_due or polling.is_due(states[f.url], now)]
    if on_start is not None:
        on_start(len(selected))
    rng = rng or random.Random()  # noqa: S311 -- jitter for polling times, not cryptography
    settings = fetch_settings(loaded.config.polling)
    outcomes: list[PollOutcome] = []
    clock = time.monotonic()
    workers = PARSE_WORKERS if len(selected) >= PARALLEL_PARSE_THRESHOLD else 1
    # Fetching is much faster than parsing: without a bound, nearly every body would wait
    # in the parse queue at once.  A feed that got a body holds its slot until stored; one
    # that got none (a 304, an error) gives it back as soon as its fetch is done, since its
    # state waiting for the writer holds nothing worth bounding.  The writer then finds many
    # of those states waiting at once and writes them in a few large transactions rather
    # than many small ones (a poll of 1,000 feeds answering 304: 86-104 transactions ->
    # 12-44, writer thread CPU 100-120 -> 65-70 ms, and it shares the interpreter with the
    # event loop).  The slots are tokens in a queue rather than a Semaphore, whose acquire()
    # looks at every waiter (CPython 3.11): with a thousand feeds waiting that cost more
    # than their 304s.
    in_flight: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(settings.concurrency):
        in_flight.put_nowait(None)
    # And of those, only a few may hold a body on its way through parse and store (a parsed
    # feed weighs about ten times its body, and the parsers set the pace anyway), and feeds
    # that surely send a body start their fetch only while few bodies wait (_BodyFlow).
    flow = _BodyFlow(PARSE_BACKLOG_PER_WORKER * max(workers, 1), most=settings.concurrency)
    # Read once: pruning, which writes tombstones, holds the ingest lock that polls share.
    writer = _StoreWriter(store, now, tombstoned=store.tombstoned_feeds())
    try:
        async with ParsePool(workers) as parser, fetch.make_client(settings) as client:
            # Feeds without validators always send a body: start the parsers now, so that
            # their imports overlap the first fetches.  Otherwise (a poll where most feeds
            # answer 304) start one, on the core the event loop leaves idle: of many feeds
            # some have usually changed, and their first body then finds a parser ready.
            # The others start with the first body, if any comes.
            if sum(1 for f in selected if _sends_a_body(states[f.url])) >= PARALLEL_PARSE_THRESHOLD:
                parser.start()
            elif len(selected) >= PARALLEL_PARSE_THRESHOLD:
                parser.start(1)
            # (A smaller poll starts its one worker with its first body, if any comes.)
            fetcher = fetch.Fetcher(client, settings)

            async def poll_one(feed: FeedConfig) -> PollOutcome:
                state = states[feed.url]
                policy = polling_policy(loaded.config.polling, feed)
                async with flow.body_expected(_sends_a_body(state)):
                    await in_flight.get()
                    holding = True
                    try:
                        result = await _fetch_one(loaded, feed, state, policy, fetcher, now)
                        if result.body is None:  # nothing to hold on to while it is stored
                            in_flight.put_nowait(None)
                            holding = False
                        return await _store_one(
                            loaded, feed, state, policy, result, parser, flow, writer, now, rng
                        )
                    finally:
                        if holding:
                            in_flight.put_nowait(None)

            await _poll_all([poll_one(f) for f in selected], outcomes, on_outcome)
    finally:
        writer.close()
    order = {f.url: i for i, f in enumerate(feeds)}
    outcomes.sort(key=lambda o: order[o.url])
    finished = now + timedelta(seconds=time.monotonic() - clock)
    return PollSummary(tuple(outcomes), started=now, finished=finished)


async def _poll_all(
    polls: Sequence[Coroutine[Any, Any, PollOutcome]],
    outcomes: list[PollOutcome],
    on_outcome: Callable[[PollOutcome], None] | None,
) -> None:
    """Run ``polls`` at once, collecting their outcomes as they finish.

    Stopped (Ctrl-C, a stop signal, an error), the feeds still in flight end here, before
    the caller closes the HTTP client and the parsers under them: else each would be
    recorded as failed ("the client has been closed") and backed off.
    """
    tasks = [asyncio.ensure_future(poll) for poll in polls]
    try:
        for next_done in asyncio.as_completed(tasks):
            outcome = await next_done
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def _fetch_one(  # noqa: PLR0917 -- private; the pieces of one poll cycle
    loaded: LoadedConfig,
    feed: FeedConfig,
    state: FeedState,
    policy: polling.PollingPolicy,
    fetcher: fetch.Fetcher,
    now: datetime,
) -> FetchResult:
    """Fetch one feed: conditionally, unless its policy wants an unconditional fetch now."""
    location = state.fetch_url or loaded.feed_location(feed.url)
    return await fetcher.fetch(
        state, location, now, unconditional=polling.wants_unconditional(state, now, policy)
    )


async def _store_one(  # noqa: PLR0917 -- private; the pieces of one poll cycle
    loaded: LoadedConfig,
    feed: FeedConfig,
    state: FeedState,
    policy: polling.PollingPolicy,
    result: FetchResult,
    parser: ParsePool,
    flow: _BodyFlow,
    writer: _StoreWriter,
    now: datetime,
    rng: random.Random,
) -> PollOutcome:
    """Parse (if a body came) and store what one fetch brought; every failure ends up in
    the outcome, never raised."""
    async with contextlib.nullcontext() if result.body is None else flow.parse_slot():
        parsed = ParseOutcome(None, None)
        if result.body is not None:
            # What is stored already need not be cleaned again (parse's module docstring).
            known = await writer.source_keys(feed.url) if state.last_fetch is not None else None
            parsed = await parser.parse(result.body, result.headers, result.final_url, known)
        if parsed.feed is not None:
            for warning in parsed.feed.warnings:
                log.warning("%s: %s: %s", loaded.where(feed.url), without_password(feed.url), warning)
        new_state = polling.advance_state(
            state,
            result,
            parsed.feed.ttl if parsed.feed else None,
            policy,
            now,
            rng,
            parse_error=parsed.error,
            # Logged above and stored too: `aggregator status` shows them until a clean body.
            warnings=parsed.feed.warnings if parsed.feed else (),
        )
        if parsed.feed is not None and parsed.feed.title and feed.title is None:
            # Without a title in feeds.yaml, the feed's own, as it now calls itself (also
            # after a configured title was removed: sync_feeds keeps a stored one until then).
            new_state = replace(new_state, title=parsed.feed.title)
        entries = parsed.feed.entries if parsed.feed else ()
        try:
            counts = await writer.save(
                new_state, entries, parsed.hashes, parsed.feed.source_keys if parsed.feed else None
            )
        except DatabaseUnavailable:
            raise  # locked, full, gone: no feed's fault, and nothing else can be stored either
        except StoreError as exc:
            if not entries:
                raise  # a feed's state alone: the database itself is failing, not this feed
            # The database refused what this feed brought (text it cannot store, say): the
            # feed fails, with the reason in its state, and the other feeds go on.
            new_state = polling.advance_state(
                state, result, None, policy, now, rng, parse_error=f"its entries could not be stored: {exc}"
            )
            counts = await writer.save(new_state, ())
    return PollOutcome(
        url=feed.url,
        status=new_state.status,
        new_entries=counts.new,
        updated_entries=counts.updated,
        error=new_state.last_error if new_state.status in _FAILED else None,
        notice=_redirect_notice(loaded, feed.url, state, new_state),
        moved_to=new_state.fetch_url if new_state.fetch_url != state.fetch_url else None,
    )


_FAILED = (FeedStatus.ERROR, FeedStatus.RETIRED)


def _sends_a_body(state: FeedState) -> bool:
    """Whether this feed's next fetch will surely bring a body: it has no validators to send."""
    return not (state.etag or state.last_modified)


class _BodyFlow:
    """How many bodies a poll holds at once: ``backlog`` of them on their way through parse
    and store, and the feeds that surely send one (no validators) fetching meanwhile.

    ``parse_slot()`` is one of the ``backlog`` places from parse to stored.  A feed that
    surely sends a body enters ``body_expected()`` before its fetch and leaves when stored;
    at first ``2 * backlog`` may be inside, one more each time a body finds a parse slot
    free (the parsers wait for the network, so more fetches should overlap), up to
    ``most`` (the requests in flight).  On a fast network the parsers set the pace, and a
    cold poll holds about twice the backlog in bodies instead of one per request in flight
    (each ~100 KB: about 5 MB of a thousand-feed poll's peak); on a slow one the limit
    doubles about every round trip until the fetches keep the parsers busy.

    The waiting feeds are futures in a deque, woken in order (see ``in_flight`` in
    ``poll_feeds`` for why not a Semaphore).
    """

    def __init__(self, backlog: int, most: int) -> None:
        self._backlog = asyncio.Semaphore(backlog)
        self._limit = min(2 * backlog, most)
        self._most = max(most, self._limit)
        self._inside = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @contextlib.asynccontextmanager
    async def parse_slot(self) -> AsyncIterator[None]:
        if not self._backlog.locked():
            self._widen()
        async with self._backlog:
            yield

    @contextlib.asynccontextmanager
    async def body_expected(self, expected: bool) -> AsyncIterator[None]:
        if not expected:
            yield
            return
        await self._enter()
        try:
            yield
        finally:
            self._inside -= 1
            self._wake()

    async def _enter(self) -> None:
        if self._inside < self._limit and not self._waiting:
            self._inside += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._wake()  # those ahead may all have been cancelled
        try:
            await waiter  # _wake counted us in
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # let in, then cancelled: give it back
                self._inside -= 1
                self._wake()
            raise

    def _widen(self) -> None:
        if self._limit < self._most:
            self._limit += 1
            self._wake()

    def _wake(self) -> None:
        while self._waiting and self._inside < self._limit:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._inside += 1
                waiter.set_result(None)


@dataclass(slots=True)
class _Pending:
    """A poll waiting for the writer thread."""

    state: FeedState
    entries: Sequence[Entry]
    hashes: Sequence[str] | None  # precomputed by a parse worker, or None
    source_keys: Sequence[str] | None  # ParsedFeed.source_keys, or None
    future: asyncio.Future[SaveCounts]


class _StoreWriter:
    """The one thread that writes polls, so the event loop never waits on the database.

    Polls that finish while it writes go together into its next transaction
    (``Store.save_polls``: each feed still lands whole or not at all, and a feed whose
    write fails fails alone).  That is one commit per batch instead of one per feed.  A
    poll cancelled before its batch starts is not written; a batch being written when the
    cycle stops is finished (``close`` waits for it).
    """

    MAX_BATCH_ENTRIES = 5000  # bounds one transaction's size and how long it holds the lock

    def __init__(self, store: Store, now: datetime, *, tombstoned: frozenset[str] | None = None) -> None:
        self._store = store
        self._now = now
        self._tombstoned = tombstoned  # Store.tombstoned_feeds, read once for the cycle
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        # Reads (source_keys) get one thread of their own: not queued behind the writes, and
        # not the loop's default executor, whose several threads each held a connection with
        # its own page cache and a malloc arena of their own (3-4 MB of a bump poll's peak).
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-reader")
        self._queue: list[_Pending] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def save(
        self,
        state: FeedState,
        entries: Sequence[Entry],
        hashes: Sequence[str] | None = None,
        source_keys: Sequence[str] | None = None,
    ) -> SaveCounts:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SaveCounts] = loop.create_future()
        self._queue.append(_Pending(state, entries, hashes, source_keys, future))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = loop.create_task(self._drain())
        return await future

    def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].entries) <= self.MAX_BATCH_ENTRIES):
            item = self._queue.pop(0)
            if not item.future.cancelled():
                batch.append(item)
                size += len(item.entries)
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := self._next_batch():
            polls = [(item.state, item.entries) for item in batch]
            hashes = [item.hashes for item in batch]
            keys = [item.source_keys for item in batch]
            try:
                results: list[SaveCounts | StoreError] = await loop.run_in_executor(
                    self._thread,
                    functools.partial(
                        self._store.save_polls, polls, self._now, hashes, keys, tombstoned=self._tombstoned
                    ),
                )
            except Exception as exc:  # not a feed's failure: every poll of the batch gets it
                results = [exc] * len(batch)  # type: ignore[list-item]
            for future, result in zip((item.future for item in batch), results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def source_keys(self, feed_url: str) -> dict[str, str]:
        """``Store.source_keys`` off the event loop, and not queued behind the writes: a read."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._reader, self._store.source_keys, feed_url
            )
        except StoreError as exc:  # only a cost: the feed's entries are all cleaned again
            log.warning("%s", exc)
            return {}

    def close(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        for item in self._queue:
            item.future.cancel()
        self._queue.clear()
        self._thread.shutdown(wait=True)  # a write in progress completes
        self._reader.shutdown(wait=True)


def _redirect_notice(loaded: LoadedConfig, url: str, old: FeedState, new: FeedState) -> str | None:
    if new.fetch_url and new.fetch_url != old.fetch_url:
        return moved_notice(loaded, url, new.fetch_url)
    return None


def moved_notice(loaded: LoadedConfig, url: str, fetch_url: str) -> str:
    """What to tell of a feed polled at ``fetch_url`` (a permanent redirect it adopted) while
    feeds.yaml still says ``url``: by the poll that adopts it, and by ``status`` until then."""
    return (
        f"{loaded.where(url)}: {without_password(url)} has moved permanently to"
        f" {without_password(fetch_url)}; polling the new address: update the url in {loaded.path.name}"
    )


def feed_states_for(loaded: LoadedConfig, store: Store) -> Sequence[FeedState]:
    """The polling state of every configured feed, in config order (never-polled feeds included)."""
    urls = [f.url for f in loaded.config.feeds]
    states = {s.url: s for s in store.feed_states(urls)}
    return [states.get(u, FeedState(u)) for u in urls]


# _GROUPING_IMPORTS: dedupe, stories and topics are imported where they are used.  They pull
# in NumPy, SciPy and scikit-learn (about 0.6 s and 100 MB), which `aggregator poll`, run
# from cron or a benchmark every few minutes, never needs.


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did, for the CLI summary and the scheduler's log line."""

    poll: PollSummary
    duplicates: int  # entries whose duplicate_of changed
    stories: int  # stories regrouped this cycle
    published: PublishResult  # the combined feeds written (whole and per topic)


async def run_cycle(
    loaded: LoadedConfig,
    store: Store,
    now: datetime,
    *,
    only_due: bool = True,
    on_outcome: Callable[[PollOutcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> CycleReport:
    """One cycle: poll (the due feeds), collapse copies, group stories and topics, and write
    the combined feeds.

    A file the last stage cannot write is an ``OutputError`` that says so, and that what
    was polled is stored all the same (the next cycle writes the feeds from it).

    Digests are not part of it: the caller holds the ingest lock shared around a cycle
    (``runlock.ingest_lock``, from before it reads ``now``), and freezing an issue takes
    that lock alone, so ``aggregator run --once`` sends them after the cycle and the
    scheduler from each newsletter's own job.
    """
    summary = await poll_feeds(
        loaded, store, now, only_due=only_due, on_outcome=on_outcome, on_start=on_start
    )
    changed = collapse_duplicates(loaded.config, store)
    grouped = group_into_stories(loaded.config, store, now)
    try:
        published = publish_output(loaded, store, now)
    except OutputError as exc:
        # The bare OSError said neither which stage failed nor that the others' work is kept.
        stored = (
            f"the polled entries are stored ({summary.new_entries} new, {summary.updated_entries} updated)"
        )
        raise exc.but(kept=stored) from exc.__cause__
    return CycleReport(summary, changed, grouped, published)


def publish_output(loaded: LoadedConfig, store: Store, now: datetime) -> PublishResult:
    """Write the combined feeds (Atom, RSS, JSON Feed; whole and per topic) from the stored stories.

    A file that cannot be written is an ``OutputError`` that also says where the folder is
    configured and that the next cycle writes the feeds (nothing else is needed: they are
    written whole from the store each time).
    """
    # Imported here: publish sanitizes with nh3, which `aggregator poll` never needs.
    from aggregator.publish import PublishSettings, publish_feeds  # noqa: PLC0415 -- nh3, for publishing only
    from aggregator.snapshot import read_snapshot  # noqa: PLC0415 -- goes with publish

    titles = store.feed_titles()
    titles.update({f.url: f.title for f in loaded.config.feeds if f.title})
    output = loaded.config.output
    # per_topic: a quiet configured topic's feed shows its older stories too, and is not removed.
    configured = {t.name for t in loaded.config.topics} | {t for f in loaded.config.feeds for t in f.topics}
    snapshot = read_snapshot(
        store,
        titles,
        now,
        at_least=output.max_stories,
        per_topic=output.max_stories,
        kept_topics=configured,
        # A feed removed from feeds.yaml leaves the outputs (its entries stay stored); a
        # disabled one is only paused, and its stories stay.
        feeds=[f.url for f in loaded.config.feeds],
    )
    kept = tuple(
        dict.fromkeys(
            [*(t.name for t in loaded.config.topics), *(t for f in loaded.config.feeds for t in f.topics)]
        )
    )
    settings = PublishSettings(output.title, output.base_url, output.max_stories, output.language, kept)
    try:
        return publish_feeds(snapshot, loaded.base_dir / output.dir, settings)
    except OutputError as exc:
        raise exc.but(
            setting=f"output.dir in {loaded.path.name}", retry="they are written at the next cycle"
        ) from exc.__cause__


def dedupe_settings(config: Config) -> DedupeSettings:
    from aggregator.dedupe import DedupeSettings  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    return DedupeSettings(
        title_window=config.dedupe.title_window,
        jaccard=config.dedupe.jaccard,
        containment=config.dedupe.containment,
        feed_priority={f.url: f.priority for f in config.feeds if f.priority},
        pin_together=config.dedupe.pin_together,
        pin_apart=config.dedupe.pin_apart,
    )


def collapse_duplicates(config: Config, store: Store) -> int:
    """Sign the entries that have no signature yet and match them against the stored ones.

    Returns how many entries' ``duplicate_of`` changed.  The index is built from stored
    signatures, so each run costs the new entries plus one read of the signatures.
    """
    from aggregator import dedupe  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    fresh = store.entries_without_signature()
    pins = config.dedupe.pin_together or config.dedupe.pin_apart
    if not fresh and not pins:
        return 0  # the usual quiet cycle: nothing to sign, no pin to check
    duplicate_of = store.duplicate_map()
    # A pin added to feeds.yaml since the last run must take effect although nothing is new:
    # the pinned entries are matched again.
    fresh_ids = {e.id for e in fresh}
    unsettled = _unsettled_pins(config, duplicate_of) - fresh_ids
    fresh += store.get_entries(sorted(unsettled))
    if not fresh:
        return 0
    fresh_ids = {e.id for e in fresh}
    index = dedupe.DuplicateIndex.from_stored(
        (pair for pair in store.iter_signatures() if pair[0] not in fresh_ids),
        {eid: dup for eid, dup in duplicate_of.items() if eid not in fresh_ids},
        dedupe_settings(config),
    )
    if index.stale_ids:
        fresh += store.get_entries(index.stale_ids)
    result = dedupe.find_duplicates(fresh, index)
    # One transaction: a signed entry is never compared again, so its verdict must land with it.
    store.save_duplicates(
        (
            DuplicateEvidence(
                v.entry_id,
                v.duplicate_of,
                v.stage.value if v.stage else None,
                v.score if v.stage else None,
                v.matched if v.stage else None,
                v.jaccard,
                v.containment,
            )
            for v in result.verdicts
        ),
        signatures=result.signatures.items(),
    )
    return sum(1 for v in result.verdicts if v.duplicate_of is not None)


def _unsettled_pins(config: Config, duplicate_of: Mapping[str, str | None]) -> set[str]:
    """Entries named by a pin that the stored groups do not honour yet (unknown ids are ignored)."""

    def kept(entry_id: str) -> str:
        return duplicate_of.get(entry_id) or entry_id

    unsettled: set[str] = set()
    for a, b in config.dedupe.pin_together:
        if a in duplicate_of and b in duplicate_of and kept(a) != kept(b):
            unsettled |= {a, b}
    for a, b in config.dedupe.pin_apart:
        if a in duplicate_of and b in duplicate_of and kept(a) == kept(b):
            unsettled |= {a, b}
    return unsettled


def story_settings(config: Config) -> StorySettings:
    """How to group, from ``stories.method``: lexical (the default), or joined with embeddings."""
    from aggregator import stories  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    if config.stories.method == "embeddings":
        from aggregator import embeddings  # noqa: PLC0415 -- torch, only when asked for

        return embeddings.story_settings()
    return stories.StorySettings()


def group_into_stories(config: Config, store: Store, now: datetime) -> int:
    """Regroup the recent entries (and any without a story) into stories with topics, then
    relabel the older stories if the topics in feeds.yaml changed (``relabel_stories``).

    Returns how many stories were regrouped.
    """
    labelled = _regroup_recent(config, store, now)
    relabel_stories(config, store, regrouped={s.id for s in labelled})
    return len(labelled)


def _regroup_recent(config: Config, store: Store, now: datetime) -> tuple[Story, ...]:
    """Regroup the entries within the story window (and any without a story); the stories saved."""
    from aggregator import stories, topics  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    settings = story_settings(config)
    since = now - settings.window
    # An entry's time is never later than its first sighting, so the store can narrow it down.
    candidates: list[StoredEntry] = [
        e for e in store.entries_to_group(since) if e.story is None or stories.entry_time(e) >= since
    ]
    if not candidates:
        return ()
    late = _late_copies(store, candidates)
    candidates = [e for e in candidates if e.id not in late]
    labelled: tuple[Story, ...] = ()
    assignments = dict(late)
    if candidates:
        grouping = stories.group_stories(candidates, settings=settings, now=now)
        rules, feed_topics = _topic_rules(config)
        unchanged = _unchanged_stories(grouping.stories, candidates, _last_regroup(store))
        had = _automatic_topics_of(candidates, _configured_names(store, rules, feed_topics))
        kept = {sid: had.get(sid) for sid in unchanged}
        had = {sid: name for sid, name in had.items() if sid not in unchanged}
        labelled = topics.assign_topics(
            grouping.stories,
            candidates,
            rules,
            feed_topics=feed_topics,
            kept=kept,
            had=had,
            compared=grouping.compared,  # the entries as grouped: boilerplate learned once a cycle
        )
        # A story whose members did not change keeps its label and topics as stored: both are
        # chosen against the whole window, which changes as entries leave it, and a story
        # relabelled or renamed for that would show as updated although nothing happened.
        labelled = tuple(s for s in labelled if s.id not in unchanged)
        assignments.update(grouping.assignments)
    store.save_stories(((s.id, s.label, s.topics) for s in labelled), assignments.items(), now)
    store.set_meta_value(REGROUP_RECORD, now.isoformat())
    return labelled


# The ``meta`` row recording when the story stage last regrouped (an ISO time).
REGROUP_RECORD = "regrouped"


def _last_regroup(store: Store) -> datetime | None:
    """When the stories were last regrouped, or None (never, or unreadable)."""
    value = store.meta_value(REGROUP_RECORD)
    try:
        return datetime.fromisoformat(value) if value is not None else None
    except ValueError:
        return None


def _unchanged_stories(
    grouped: Sequence[Story], candidates: Sequence[StoredEntry], since: datetime | None
) -> set[str]:
    """The stories that have exactly the members they had, none of them edited ``since`` the
    last regroup (without one, edits are not looked for)."""
    before: dict[str, set[str]] = {}
    for entry in candidates:
        if entry.story is not None:
            before.setdefault(entry.story, set()).add(entry.id)
    edited = {e.id for e in candidates if since is not None and e.last_updated > since}
    return {
        story.id
        for story in grouped
        if before.get(story.id) == set(story.entry_ids) and edited.isdisjoint(story.entry_ids)
    }


def _configured_names(
    store: Store, rules: Sequence[TopicRule], feed_topics: Mapping[str, Sequence[str]]
) -> set[str]:
    """The topic names configured now or at the last relabel: any other stored one is automatic."""
    from aggregator import topics  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    recorded = _relabel_record(store)
    return set(topics.configured_names(rules, feed_topics)) | set(recorded[1] if recorded is not None else ())


def _automatic_topics_of(candidates: Sequence[StoredEntry], configured: Collection[str]) -> dict[str, str]:
    """The automatic topic of each story of ``candidates`` that has one (its members carry its topics)."""
    found: dict[str, str] = {}
    for entry in candidates:
        if entry.story is not None and entry.story not in found:
            name = next((name for name in entry.topics if name not in configured), None)
            if name is not None:
                found[entry.story] = name
    return found


def _topic_rules(config: Config) -> tuple[tuple[TopicRule, ...], dict[str, tuple[str, ...]]]:
    """The configured topics: the keyword rules, and each feed's topics (feeds with some)."""
    from aggregator.topics import TopicRule  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    rules = tuple(TopicRule(t.name, t.keywords) for t in config.topics)
    return rules, {f.url: tuple(f.topics) for f in config.feeds if f.topics}


# The ``meta`` row recording what the stored stories were last relabelled with.
TOPICS_RECORD = "topics"


def relabel_stories(config: Config, store: Store, *, regrouped: Collection[str] = ()) -> int:
    """When the topics in feeds.yaml changed since the last time, give every stored story
    (but those just ``regrouped``, labelled with them already) the configured topics they
    give it now, keeping its automatic topic; returns how many stories changed.

    The story stage regroups only the recent entries, so without this an edit of the topics
    never reached the stories before: a keyword topic added stayed empty, a feed's topic
    removed kept its old stories.  Their ``updated`` time stays: their news did not change.
    An unchanged configuration costs one small read (the ``meta`` row); a changed one reads
    the stories page by page and writes each page's changes in a transaction of its own.
    The row is written last, so an interrupted relabel is done again (it is idempotent).
    """
    from aggregator import topics  # noqa: PLC0415 -- see _GROUPING_IMPORTS

    rules, feed_topics = _topic_rules(config)
    fingerprint = topics.topic_fingerprint(rules, feed_topics)
    names = topics.configured_names(rules, feed_topics)
    recorded = _relabel_record(store)
    if recorded is not None and recorded[0] == fingerprint:
        return 0
    # A stored topic configured then or now is computed again; any other is the automatic
    # one, kept.  Without a record (a database from before relabelling) the names configured
    # before are unknown: the current ones stand in, so a topic removed meanwhile stays.
    configured = set(names) | set(recorded[1] if recorded is not None else ())
    changed = 0
    for page in store.story_pages():
        older = [(story, members) for story, members in page if story.id not in regrouped]
        computed = topics.configured_topics([members for _, members in older], rules, feed_topics=feed_topics)
        relabelled = []
        for (story, members), names_now in zip(older, computed, strict=True):
            wanted = (*names_now, *(name for name in story.topics if name not in configured))
            if story.topics != wanted or any(m.topics != wanted for m in members):
                relabelled.append((story.id, wanted))
        store.save_story_topics(relabelled)
        changed += len(relabelled)
    store.set_meta_value(TOPICS_RECORD, json.dumps({"fingerprint": fingerprint, "names": list(names)}))
    if changed:
        log.info("the topics in feeds.yaml changed: %d older stories relabelled", changed)
    return changed


def _relabel_record(store: Store) -> tuple[str, tuple[str, ...]] | None:
    """(fingerprint, configured names) of the last relabel, or None (never, or unreadable)."""
    value = store.meta_value(TOPICS_RECORD)
    if value is None:
        return None
    try:
        record = json.loads(value)
        return str(record["fingerprint"]), tuple(str(name) for name in record["names"])
    except (ValueError, TypeError, KeyError):  # written by hand, say: relabel as if never done
        return None


def _late_copies(store: Store, candidates: Sequence[StoredEntry]) -> dict[str, str]:
    """Entries among ``candidates`` that belong to a story grouped before the window:
    entry id → that story.

    The story stage regroups only recent entries, so one article could otherwise be in two
    stories (in ``export``, and sent again in a digest): a copy that arrives after its kept
    copy left the window takes the kept copy's story, and a kept copy that arrives after
    its copies (the wire's feed was down) takes theirs, with its other copies.
    """
    given = {e.id for e in candidates}
    assigned: dict[str, str] = {}
    for copy in store.copies_of(e.id for e in candidates if e.duplicate_of is None):
        if copy.id not in given and copy.story is not None and copy.duplicate_of is not None:
            assigned.setdefault(copy.duplicate_of, copy.story)  # the earliest copy's story
    outside = {
        e.duplicate_of for e in candidates if e.duplicate_of is not None and e.duplicate_of not in given
    }
    story_of = {e.id: e.story for e in store.get_entries(outside) if e.story is not None} if outside else {}
    for e in candidates:
        if e.duplicate_of is not None and (
            story := assigned.get(e.duplicate_of) or story_of.get(e.duplicate_of)
        ):
            assigned[e.id] = story
    return assigned


def prune_entries(
    loaded: LoadedConfig, store: Store, now: datetime, *, dry_run: bool = False
) -> PruneReport | None:
    """Remove the entries ``retention.max_age`` says are old (see ``aggregator.retention``);
    None when retention is off (``max_age: null``).  ``dry_run``: say what would go, remove nothing.

    The caller holds the ingest lock alone (``runlock.ingest_lock(exclusive=True)``) unless
    it only looks (``dry_run``): a poll storing meanwhile could bring an entry back that is
    being removed, as new.  Each chunk of whole copy groups is one transaction.
    """
    max_age = loaded.config.retention.max_age
    if max_age is None:
        return None
    next_issues = {}
    for letter in loaded.config.newsletters:
        latest = store.latest_issue(letter.name)  # any status: the next window starts after an empty one too
        next_issues[letter.name] = (
            latest.window_end if latest is not None else retention.before(now, letter.first_issue_lookback)
        )
    cutoff, held_by = retention.retention_cutoff(now, max_age, next_issues)
    aged = {entry.id: entry for entry in store.aged_entries(cutoff)}
    if not aged:
        return PruneReport(cutoff, held_by, dry_run=dry_run)
    groups, kept = retention.removable_groups(aged, store.duplicate_map())
    going = [aged[eid] for group in groups for eid in group]
    if dry_run:
        stories = _stories_emptied(store, going)
    else:
        stories = sum(
            store.remove_entries([aged[eid] for eid in chunk], now)
            for chunk in retention.in_chunks(groups, PRUNE_CHUNK)
        )
    per_feed = collections.Counter(entry.feed_url for entry in going)
    order = {f.url: i for i, f in enumerate(loaded.config.feeds)}
    removed = sorted(per_feed.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    return PruneReport(cutoff, held_by, tuple(removed), stories, kept, dry_run)


def prune_and_republish(loaded: LoadedConfig, store: Store, now: datetime) -> PruneReport | None:
    """``prune_entries``; then, when entries went and the combined feeds were published
    before, those written again: they would go on listing stories whose entries are gone
    (``serve`` and its front page read them) until the next cycle, an hour away or more.
    The caller holds the ingest lock alone, as for ``prune_entries``."""
    report = prune_entries(loaded, store, now)
    output = loaded.base_dir / loaded.config.output.dir
    if report is not None and report.entries and (output / "feed.atom").exists():
        publish_output(loaded, store, now)
    return report


# Entries removed per transaction: bounds how long pruning holds the database's write lock
# (the web side and `aggregator status` read meanwhile) and what an interruption leaves undone.
PRUNE_CHUNK = 500


def _stories_emptied(store: Store, going: Sequence[AgedEntry]) -> int:
    """How many stories would be left with no entry once ``going`` is removed."""
    leaving = collections.Counter(entry.story for entry in going if entry.story is not None)
    sizes = store.story_sizes(leaving)
    return sum(1 for story, count in leaving.items() if sizes.get(story, 0) <= count)
