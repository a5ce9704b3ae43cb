"""When to poll each feed next, and what the store should remember about it.

Pure: no I/O, no clock.  ``now`` and a ``random.Random`` come in from the caller, so the
same inputs always give the same state.

In:  the stored ``FeedState``, the ``FetchResult`` of one fetch, the feed's RSS ``<ttl>``
     and the parser's warnings (when it parsed), a ``PollingPolicy``, ``now`` and ``rng``.
Out: the next ``FeedState`` (``advance_state``); whether a feed is due (``is_due``); whether
     the next fetch should leave out ETag/Last-Modified (``wants_unconditional``).

The rules, in the order a reader of ``aggregator status`` would ask about them:

- A healthy feed is polled again after the *largest* of the configured interval, the
  feed's RSS ``<ttl>``, the server's cache lifetime (Cache-Control max-age or
  Expires - Date) and a Retry-After (capped at ``max_retry_after``), then clamped to
  ``[min_interval, max_interval]``.  Taking the largest is being polite: every one of
  those is the publisher asking us not to come back sooner.
- A failing feed backs off exponentially (``backoff_base`` doubling per consecutive
  error, capped at ``backoff_cap``), but never sooner than a Retry-After; a server that
  said "too many requests" (429) is also never asked sooner than the normal interval,
  and one that answered with a server error (5xx) never sooner than the interval or
  ``backoff_cap``, whichever is shorter: a struggling server is not polled *more* often
  than a healthy one.  Other errors (connection refused, a timeout, a parse error)
  keep the fast first retries.
- After a 429 or 503, the recorded error ends with the time of the next try
  ("next try at ..."): the fetch's message cannot know it, since it is decided here.
- Jitter only ever *adds* time (up to ``jitter`` x the delay), so it never makes us
  earlier than a server asked, and it spreads feeds that started together.
- A 410 Gone retires the feed: it is never due again (the user should remove it).  Fetch
  says so (RETIRED) only for a 410 at the configured URL or after permanent redirects; one
  reached through a temporary redirect is an ERROR, and backs off like any other.
- The server's cache lifetime is what is left of it: fetch takes the response's Age off
  (RFC 9111 4.2.3), so a CDN's copy near the end of its max-age does not hold the feed back.
- A parse error counts as an error.  The validators of the unparseable response are
  not kept, so the next poll downloads and parses again instead of getting a 304 for
  bytes we could not read.
- A permanent redirect (301/308) is adopted as ``fetch_url`` only after the same target
  was seen on ``redirect_confirmations`` successful polls in a row: one misconfigured
  deploy must not move a subscription for good.  Adopting it is the caller's cue to
  tell the user which line of feeds.yaml to change.
- The parser's warnings about a body it accepted (broken XML feedparser recovered from, a
  wrong charset) are kept as ``last_warning`` until a body parses cleanly: its entries may
  be incomplete, and the poll's log line is easily never read.  A 304 keeps them (the body
  is the one stored) and so does an error (the entries stored are still that body's).  They
  are joined and capped at ``MAX_WARNING_CHARS``: a hostile feed could make them huge.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aggregator.types import FeedState, FeedStatus, FetchResult

# The longest ``last_warning`` stored: enough for several parser messages, bounded because a
# feed's own text may be quoted in them and a row is read by every `aggregator status`.
MAX_WARNING_CHARS = 1000


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    interval: timedelta = timedelta(hours=1)  # the configured polling interval
    min_interval: timedelta = timedelta(minutes=5)
    max_interval: timedelta = timedelta(days=7)
    max_retry_after: timedelta = timedelta(days=2)  # a Retry-After longer than this is cut to this
    backoff_base: timedelta = timedelta(minutes=15)  # the delay after the first error
    backoff_cap: timedelta = timedelta(days=1)
    jitter: float = 0.1  # up to this fraction of the delay is added at random
    # Servers with broken validators answer 304 forever although the feed changed;
    # a full download this often catches that.  None turns it off.
    unconditional_every: timedelta | None = timedelta(days=7)
    redirect_confirmations: int = 3

    def __post_init__(self) -> None:
        if self.min_interval > self.max_interval:
            raise ValueError("PollingPolicy: min_interval is larger than max_interval")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"PollingPolicy: jitter must be between 0 and 1, not {self.jitter}")
        if self.redirect_confirmations < 1:
            raise ValueError("PollingPolicy: redirect_confirmations must be at least 1")


def is_due(state: FeedState, now: datetime) -> bool:
    """Whether the feed should be fetched at ``now``.  Never-polled feeds are due; retired ones never."""
    if state.status is FeedStatus.RETIRED:
        return False
    return state.next_check is None or state.next_check <= now


def wants_unconditional(state: FeedState, now: datetime, policy: PollingPolicy) -> bool:
    """Whether the next fetch should send no ETag/Last-Modified, to see the full response again.

    Only meaningful when there are validators to leave out.  A state with validators but
    no record of a full download (e.g. from before this was tracked) counts as overdue.
    """
    if policy.unconditional_every is None or not (state.etag or state.last_modified):
        return False
    last = state.last_unconditional_fetch
    return last is None or now - last >= policy.unconditional_every


def advance_state(  # noqa: PLR0917 -- the signature the pipeline calls, all positional
    state: FeedState,
    result: FetchResult,
    ttl: timedelta | None,
    policy: PollingPolicy,
    now: datetime,
    rng: random.Random,
    *,
    parse_error: str | None = None,
    warnings: Sequence[str] = (),
) -> FeedState:
    """The state to store after ``result``.  ``ttl`` is the RSS ``<ttl>`` when the body parsed;
    after a 304 the stored one (``state.ttl``) counts, since the body is the one stored.

    ``parse_error`` is the parser's message when a 200 body was not a feed: the fetch
    worked but the feed did not, so it counts as an error.  ``warnings`` are the parser's
    about a body it accepted; like ``ttl`` they replace the stored ones only then.
    """
    if result.status is FeedStatus.RETIRED:
        return replace(
            state,
            status=FeedStatus.RETIRED,
            last_fetch=result.fetched_at,
            http_status=result.http_status,
            error_count=state.error_count + 1,
            last_error=result.error,
            next_check=None,
        )

    fetched = result.status in (FeedStatus.OK, FeedStatus.NOT_MODIFIED)
    failed = not fetched or parse_error is not None
    error = parse_error if fetched else result.error
    state = _track_redirect(state, result, policy, succeeded=not failed)

    if result.status is FeedStatus.OK:
        # A new body replaces the validators; an unparseable one leaves none (see module doc).
        etag = None if parse_error else result.etag
        last_modified = None if parse_error else result.last_modified
    elif result.status is FeedStatus.NOT_MODIFIED:
        # A 304 may carry a fresh ETag; otherwise the stored ones are still right.
        etag = result.etag or state.etag
        last_modified = result.last_modified or state.last_modified
    else:
        etag, last_modified = state.etag, state.last_modified

    # A body that parsed says what its <ttl> and warnings are now (None: it has none any
    # more); a 304 means the body is the one stored, and so are they.
    parsed = result.status is FeedStatus.OK and not parse_error
    ttl = ttl if parsed else state.ttl
    error_count = state.error_count + 1 if failed else 0
    if failed:
        delay = _error_delay(error_count, result, policy, now, rng)
    else:
        delay = _success_delay(result, ttl, policy, now, rng)
    next_check = now + delay
    if not fetched and error is not None and result.http_status in (429, 503):
        # The server asked us to wait; say for how long we do (the Retry-After capped, or
        # raised to the interval), as ``aggregator status`` shows it.
        error = f"{error}; next try at {next_check.isoformat(timespec='seconds')}"

    return replace(
        state,
        status=FeedStatus.ERROR if failed else result.status,
        etag=etag,
        last_modified=last_modified,
        last_fetch=result.fetched_at,
        last_unconditional_fetch=(
            result.fetched_at
            if _unconditional_fetch_done(state, result, parse_error)
            else state.last_unconditional_fetch
        ),
        next_check=next_check,
        http_status=result.http_status,
        error_count=error_count,
        last_error=error if failed else None,
        ttl=ttl,
        last_warning=warning_text(warnings) if parsed else state.last_warning,
    )


def warning_text(warnings: Sequence[str]) -> str | None:
    """``warnings`` as one line to store (None: there are none), cut to ``MAX_WARNING_CHARS``
    with an ellipsis."""
    text = "; ".join(w for w in warnings if w)
    if not text:
        return None
    return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 1] + "…"


def _unconditional_fetch_done(state: FeedState, result: FetchResult, parse_error: str | None) -> bool:
    """Whether ``result`` was the periodic fetch without validators, done as well as it can be.

    A full body that parsed is.  So is a 304 to it from a feed with validators stored: the
    server (or a proxy) answers 304 whatever is asked, and counted as not done, every later
    poll would go without validators and fail the same way; this one poll fails instead.
    """
    if result.conditional:
        return False
    if result.status is FeedStatus.OK:
        return not parse_error
    return result.http_status == 304 and bool(state.etag or state.last_modified)


def backoff_delay(error_count: int, policy: PollingPolicy) -> timedelta:
    """The delay after ``error_count`` consecutive errors, before jitter: base, 2x base, 4x base, … cap."""
    if error_count < 1:
        return timedelta(0)
    # Cap the exponent too so that a feed failing for years does not overflow timedelta.
    doublings = min(error_count - 1, 32)
    delay: timedelta = min(policy.backoff_cap, policy.backoff_base * (1 << doublings))
    return delay


def _success_delay(
    result: FetchResult, ttl: timedelta | None, policy: PollingPolicy, now: datetime, rng: random.Random
) -> timedelta:
    candidates = [policy.interval]
    if ttl is not None:
        candidates.append(ttl)
    if result.cache_max_age is not None:
        candidates.append(result.cache_max_age)
    retry_after = _retry_after_delay(result, policy, now)
    if retry_after is not None:
        candidates.append(retry_after)
    return _clamp(_with_jitter(max(candidates), policy, rng), policy)


def _error_delay(
    error_count: int, result: FetchResult, policy: PollingPolicy, now: datetime, rng: random.Random
) -> timedelta:
    delay = _with_jitter(max(backoff_delay(error_count, policy), _error_floor(result, policy)), policy, rng)
    retry_after = _retry_after_delay(result, policy, now)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return _clamp(delay, policy)


def _error_floor(result: FetchResult, policy: PollingPolicy) -> timedelta:
    """The shortest delay after an error the server itself reported.

    A 429 asks us to poll less often: never sooner than the interval.  A 5xx means the
    server is down or overloaded: coming back sooner than we would to a healthy server
    (a weekly feed retried after 16 minutes, then 32...) adds load when it can least take
    it, for entries its publisher did not expect us to look for that soon.  So not before
    the interval, or ``backoff_cap`` when that is shorter (a weekly feed is still tried
    daily while its server is down).  A feed polled every few minutes keeps its fast
    first retries: there the backoff is the longer one anyway.
    """
    status = result.http_status
    if status == 429:
        return policy.interval
    if status is not None and 500 <= status < 600:
        return min(policy.interval, policy.backoff_cap)
    return timedelta(0)


def _retry_after_delay(result: FetchResult, policy: PollingPolicy, now: datetime) -> timedelta | None:
    if result.retry_after is None:
        return None
    return min(max(result.retry_after - now, timedelta(0)), policy.max_retry_after)


def _with_jitter(delay: timedelta, policy: PollingPolicy, rng: random.Random) -> timedelta:
    if policy.jitter == 0:
        return delay
    return delay * (1 + rng.uniform(0, policy.jitter))


def _clamp(delay: timedelta, policy: PollingPolicy) -> timedelta:
    return min(max(delay, policy.min_interval), policy.max_interval)


def _track_redirect(
    state: FeedState, result: FetchResult, policy: PollingPolicy, *, succeeded: bool
) -> FeedState:
    """Count consecutive successful polls that saw the same permanent redirect; adopt it when confirmed."""
    target = result.permanent_redirect
    if not succeeded:
        # A failed poll says nothing either way (the old host may be down for a minute).
        return state
    if target is None:
        return replace(state, redirect_target=None, redirect_count=0)
    count = state.redirect_count + 1 if target == state.redirect_target else 1
    if count < policy.redirect_confirmations:
        return replace(state, redirect_target=target, redirect_count=count)
    # Confirmed.  A redirect back to the configured URL simply undoes an earlier move.
    return replace(
        state,
        fetch_url=None if target == state.url else target,
        redirect_target=None,
        redirect_count=0,
    )
