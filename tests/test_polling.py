"""When a feed is polled next, and what is remembered about it (aggregator.polling).

A fixed ``now`` and a seeded ``random.Random``: nothing sleeps, nothing reads the clock.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.polling import PollingPolicy, advance_state, backoff_delay, is_due, wants_unconditional
from aggregator.types import FeedState, FeedStatus, FetchResult

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
URL = "https://example.org/feed.xml"
EXACT = PollingPolicy(jitter=0)  # no jitter: exact delays


def result(status: FeedStatus = FeedStatus.OK, **fields: object) -> FetchResult:
    defaults: dict[str, object] = {
        "url": URL,
        "requested_url": URL,
        "final_url": URL,
        "status": status,
        "fetched_at": NOW,
        "http_status": {
            FeedStatus.OK: 200,
            FeedStatus.NOT_MODIFIED: 304,
            FeedStatus.ERROR: 500,
            FeedStatus.RETIRED: 410,
        }.get(status),
    }
    if status is FeedStatus.OK:
        defaults["body"] = b"<rss/>"
    if status in (FeedStatus.ERROR, FeedStatus.RETIRED):
        defaults["error"] = "server error (HTTP 500) at https://example.org/feed.xml"
    defaults.update(fields)
    return FetchResult(**defaults)  # type: ignore[arg-type]


def advance(
    state: FeedState,
    res: FetchResult,
    *,
    ttl: timedelta | None = None,
    policy: PollingPolicy = EXACT,
    parse_error: str | None = None,
    seed: int = 0,
) -> FeedState:
    return advance_state(state, res, ttl, policy, NOW, random.Random(seed), parse_error=parse_error)


def fresh() -> FeedState:
    return FeedState(url=URL)


# -- is_due -------------------------------------------------------------------------------


def test_never_polled_feed_is_due() -> None:
    assert is_due(fresh(), NOW)


def test_feed_is_due_exactly_at_next_check_and_not_before() -> None:
    state = replace(fresh(), status=FeedStatus.OK, next_check=NOW)
    assert is_due(state, NOW)
    assert not is_due(state, NOW - timedelta(seconds=1))


def test_retired_feed_is_never_due() -> None:
    state = replace(fresh(), status=FeedStatus.RETIRED, next_check=NOW - timedelta(days=300))
    assert not is_due(state, NOW)


# -- success: validators, timestamps, next check -----------------------------------------


def test_200_stores_new_validators_and_resets_errors() -> None:
    state = replace(fresh(), error_count=4, last_error="boom", etag='"old"', status=FeedStatus.ERROR)
    new = advance(state, result(etag='"new"', last_modified="Mon, 18 Aug 2025 10:00:00 GMT"))
    assert new.status is FeedStatus.OK
    assert (new.etag, new.last_modified) == ('"new"', "Mon, 18 Aug 2025 10:00:00 GMT")
    assert new.error_count == 0
    assert new.last_error is None
    assert new.last_fetch == NOW
    assert new.http_status == 200
    assert new.next_check == NOW + EXACT.interval


def test_200_without_validators_forgets_the_old_ones() -> None:
    new = advance(replace(fresh(), etag='"old"', last_modified="x"), result())
    assert (new.etag, new.last_modified) == (None, None)


def test_304_keeps_stored_validators_unless_it_sends_new_ones() -> None:
    state = replace(fresh(), etag='"v1"', last_modified="Mon, 18 Aug 2025 10:00:00 GMT", error_count=2)
    kept = advance(state, result(FeedStatus.NOT_MODIFIED, conditional=True))
    assert kept.status is FeedStatus.NOT_MODIFIED
    assert (kept.etag, kept.last_modified) == ('"v1"', "Mon, 18 Aug 2025 10:00:00 GMT")
    assert kept.error_count == 0
    refreshed = advance(state, result(FeedStatus.NOT_MODIFIED, conditional=True, etag='"v2"'))
    assert refreshed.etag == '"v2"'


def test_unconditional_200_is_remembered_but_conditional_one_is_not() -> None:
    state = replace(fresh(), last_unconditional_fetch=NOW - timedelta(days=30))
    assert advance(state, result(conditional=False)).last_unconditional_fetch == NOW
    assert advance(state, result(conditional=True)).last_unconditional_fetch == NOW - timedelta(days=30)
    assert advance(state, result(FeedStatus.NOT_MODIFIED, conditional=True)).last_unconditional_fetch == (
        NOW - timedelta(days=30)
    )


@pytest.mark.parametrize(
    ("ttl", "max_age", "retry_after", "expected"),
    [
        (None, None, None, timedelta(hours=1)),  # the configured interval
        (timedelta(hours=3), None, None, timedelta(hours=3)),  # RSS <ttl> asks for longer
        (timedelta(minutes=10), None, None, timedelta(hours=1)),  # a shorter ttl never speeds us up
        (None, timedelta(hours=5), None, timedelta(hours=5)),  # Cache-Control max-age
        (timedelta(hours=2), timedelta(hours=5), NOW + timedelta(hours=4), timedelta(hours=5)),
        (None, None, NOW + timedelta(hours=9), timedelta(hours=9)),  # Retry-After
        (None, None, NOW + timedelta(days=30), timedelta(days=2)),  # Retry-After capped at 2 days
        (None, timedelta(days=365), None, timedelta(days=7)),  # clamped to max_interval
        (timedelta(days=30), None, None, timedelta(days=7)),
    ],
)
def test_next_check_is_the_largest_of_interval_ttl_cache_and_retry_after(
    ttl: timedelta | None, max_age: timedelta | None, retry_after: datetime | None, expected: timedelta
) -> None:
    new = advance(fresh(), result(cache_max_age=max_age, retry_after=retry_after), ttl=ttl)
    assert new.next_check == NOW + expected


def test_a_feeds_ttl_still_counts_after_a_304_and_goes_when_the_feed_drops_it() -> None:
    # A 304 carries no body and so no <ttl>: a daily feed was polled hourly from its first 304.
    daily = timedelta(days=1)
    first = advance(fresh(), result(), ttl=daily)
    assert (first.next_check, first.ttl) == (NOW + daily, daily)
    unchanged = advance(first, result(FeedStatus.NOT_MODIFIED))
    assert (unchanged.next_check, unchanged.ttl) == (NOW + daily, daily)
    failed = advance(unchanged, result(FeedStatus.ERROR))
    assert failed.ttl == daily  # an error says nothing about it
    dropped = advance(failed, result())  # a new body without <ttl>
    assert (dropped.next_check, dropped.ttl) == (NOW + EXACT.interval, None)


def test_interval_below_min_interval_is_raised_to_it() -> None:
    policy = PollingPolicy(interval=timedelta(seconds=10), jitter=0)
    assert advance(fresh(), result(), policy=policy).next_check == NOW + policy.min_interval


def test_jitter_only_adds_time_and_is_deterministic_per_seed() -> None:
    policy = PollingPolicy(jitter=0.2)
    checks = {advance(fresh(), result(), policy=policy, seed=seed).next_check for seed in range(20)}
    assert all(NOW + timedelta(hours=1) <= c <= NOW + timedelta(hours=1.2) for c in checks if c)
    assert len(checks) > 1  # it does spread feeds
    first = advance(fresh(), result(), policy=policy, seed=7)
    assert advance(fresh(), result(), policy=policy, seed=7) == first


# -- errors and backoff --------------------------------------------------------------------


def test_error_counts_keeps_validators_and_records_the_message() -> None:
    state = replace(fresh(), status=FeedStatus.OK, etag='"v1"', last_modified="lm")
    new = advance(state, result(FeedStatus.ERROR))
    assert new.status is FeedStatus.ERROR
    assert new.error_count == 1
    assert new.last_error == "server error (HTTP 500) at https://example.org/feed.xml"
    assert (new.etag, new.last_modified) == ('"v1"', "lm")
    assert new.http_status == 500
    assert new.last_fetch == NOW


def test_consecutive_errors_back_off_exponentially_up_to_the_cap() -> None:
    # No HTTP status: the server was not reached (refused, timed out), so nothing asks us to wait.
    state = fresh()
    delays = []
    for _ in range(10):
        state = advance(state, result(FeedStatus.ERROR, http_status=None, error="connection refused"))
        assert state.next_check is not None
        delays.append(state.next_check - NOW)
    minutes = [int(d.total_seconds() // 60) for d in delays]
    assert minutes == [15, 30, 60, 120, 240, 480, 960, 1440, 1440, 1440]
    assert state.error_count == 10


@pytest.mark.parametrize("code", [500, 502, 503])
def test_a_server_error_is_never_retried_sooner_than_a_healthy_feed_is_polled(code: int) -> None:
    # A weekly feed whose server answered 503 came back after 15 minutes, then 30...: more
    # often than when it worked.  Not before the interval, or the backoff cap if shorter.
    for interval, floor in ((timedelta(days=7), timedelta(days=1)), (timedelta(hours=6), timedelta(hours=6))):
        policy = PollingPolicy(interval=interval, jitter=0)
        state = fresh()
        delays = []
        for _ in range(8):
            state = advance(state, result(FeedStatus.ERROR, http_status=code), policy=policy)
            assert state.next_check is not None
            delays.append(state.next_check - NOW)
        assert min(delays) == floor, interval
        assert delays == sorted(delays)


def test_a_feed_polled_often_keeps_its_fast_first_retries_after_a_server_error() -> None:
    policy = PollingPolicy(interval=timedelta(minutes=5), jitter=0)
    state = advance(fresh(), result(FeedStatus.ERROR, http_status=503), policy=policy)
    assert state.next_check == NOW + policy.backoff_base


@pytest.mark.parametrize(
    ("code", "retry_after", "expected"),
    [
        (503, timedelta(days=7), timedelta(days=2)),  # capped at max_retry_after
        (503, None, timedelta(hours=1)),  # no Retry-After: the interval
        (429, timedelta(seconds=60), timedelta(hours=1)),  # never sooner than the interval
    ],
)
def test_a_429_or_503_records_when_the_next_try_really_is(
    code: int, retry_after: timedelta | None, expected: timedelta
) -> None:
    # The fetch's message said "will retry after <Retry-After>", and polling then came back
    # at another time.  Now the recorded error says the time that was stored.
    message = "service unavailable (HTTP 503) at https://example.org/feed.xml: the server is down"
    res = result(
        FeedStatus.ERROR,
        http_status=code,
        error=message,
        retry_after=None if retry_after is None else NOW + retry_after,
    )
    new = advance(fresh(), res)
    assert new.next_check == NOW + expected
    assert new.last_error == f"{message}; next try at {(NOW + expected).isoformat()}"


def test_success_after_errors_resets_backoff() -> None:
    state = replace(fresh(), status=FeedStatus.ERROR, error_count=6, last_error="down")
    new = advance(state, result())
    assert new.error_count == 0
    assert new.next_check == NOW + timedelta(hours=1)


def test_retry_after_beats_a_shorter_backoff() -> None:
    new = advance(fresh(), result(FeedStatus.ERROR, http_status=503, retry_after=NOW + timedelta(hours=6)))
    assert new.next_check == NOW + timedelta(hours=6)


def test_retry_after_is_capped() -> None:
    res = result(FeedStatus.ERROR, http_status=503, retry_after=NOW + timedelta(days=90))
    assert advance(fresh(), res).next_check == NOW + timedelta(days=2)


def test_rate_limited_feed_is_never_asked_sooner_than_its_interval() -> None:
    new = advance(fresh(), result(FeedStatus.ERROR, http_status=429))
    assert new.next_check == NOW + timedelta(hours=1)


def test_parse_error_counts_as_error_and_drops_the_unreadable_validators() -> None:
    state = replace(fresh(), status=FeedStatus.OK, etag='"old"')
    new = advance(state, result(etag='"broken"', last_modified="lm"), parse_error="not a feed: HTML page")
    assert new.status is FeedStatus.ERROR
    assert new.error_count == 1
    assert new.last_error == "not a feed: HTML page"
    # Without validators the next poll downloads and parses again instead of getting a 304.
    assert (new.etag, new.last_modified) == (None, None)
    assert new.next_check == NOW + EXACT.backoff_base
    assert new.last_unconditional_fetch is None


def test_410_retires_the_feed_for_good() -> None:
    gone = "gone (HTTP 410) at https://example.org/feed.xml: remove it from feeds.yaml"
    new = advance(replace(fresh(), status=FeedStatus.OK), result(FeedStatus.RETIRED, error=gone))
    assert new.status is FeedStatus.RETIRED
    assert new.last_error == gone
    assert new.http_status == 410
    assert not is_due(new, NOW + timedelta(days=3650))


# -- permanent redirects ------------------------------------------------------------------

NEW_URL = "https://new.example.org/feed.xml"


def test_permanent_redirect_is_adopted_after_three_polls_in_a_row() -> None:
    state = fresh()
    for seen in (1, 2):
        state = advance(state, result(permanent_redirect=NEW_URL, final_url=NEW_URL))
        assert (state.fetch_url, state.redirect_target, state.redirect_count) == (None, NEW_URL, seen)
    state = advance(state, result(permanent_redirect=NEW_URL, final_url=NEW_URL))
    assert state.fetch_url == NEW_URL
    assert (state.redirect_target, state.redirect_count) == (None, 0)


def test_a_poll_without_the_redirect_starts_the_count_again() -> None:
    state = advance(fresh(), result(permanent_redirect=NEW_URL))
    state = advance(state, result(permanent_redirect=NEW_URL))
    state = advance(state, result())  # the old URL answered itself
    assert (state.redirect_target, state.redirect_count) == (None, 0)
    state = advance(state, result(permanent_redirect=NEW_URL))
    assert (state.fetch_url, state.redirect_count) == (None, 1)


def test_a_different_target_starts_the_count_again() -> None:
    state = advance(fresh(), result(permanent_redirect=NEW_URL))
    state = advance(state, result(permanent_redirect=NEW_URL))
    state = advance(state, result(permanent_redirect="https://other.example/feed"))
    assert (state.redirect_target, state.redirect_count) == ("https://other.example/feed", 1)


def test_failed_polls_neither_count_nor_reset_a_redirect() -> None:
    state = advance(fresh(), result(permanent_redirect=NEW_URL))
    state = advance(state, result(FeedStatus.ERROR))
    state = advance(state, result(permanent_redirect=NEW_URL), parse_error="not a feed")
    assert (state.redirect_target, state.redirect_count) == (NEW_URL, 1)


def test_redirect_back_to_the_configured_url_clears_fetch_url() -> None:
    state = replace(fresh(), fetch_url=NEW_URL)
    for _ in range(3):
        state = advance(state, result(permanent_redirect=URL))
    assert state.fetch_url is None


# -- unconditional refetch ---------------------------------------------------------------


def test_wants_unconditional_every_week_when_there_are_validators() -> None:
    policy = PollingPolicy(unconditional_every=timedelta(days=7))
    state = replace(fresh(), etag='"v"', last_unconditional_fetch=NOW - timedelta(days=6))
    assert not wants_unconditional(state, NOW, policy)
    assert wants_unconditional(state, NOW + timedelta(days=1), policy)
    assert not wants_unconditional(replace(state, etag=None), NOW + timedelta(days=1), policy)
    assert wants_unconditional(replace(state, last_unconditional_fetch=None), NOW, policy)
    off = PollingPolicy(unconditional_every=None)
    assert not wants_unconditional(state, NOW + timedelta(days=100), off)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollingPolicy(min_interval=timedelta(days=10))
    with pytest.raises(ValueError, match="jitter"):
        PollingPolicy(jitter=2)


# -- properties ---------------------------------------------------------------------------

statuses = st.sampled_from([FeedStatus.OK, FeedStatus.NOT_MODIFIED, FeedStatus.ERROR])
durations = st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))


@given(
    status=statuses,
    error_count=st.integers(min_value=0, max_value=10_000),
    ttl=durations,
    max_age=durations,
    retry_in=durations,
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_next_check_always_within_bounds_and_deterministic(
    *,
    status: FeedStatus,
    error_count: int,
    ttl: timedelta | None,
    max_age: timedelta | None,
    retry_in: timedelta | None,
    jitter: float,
    seed: int,
) -> None:
    policy = PollingPolicy(jitter=jitter)
    state = replace(fresh(), error_count=error_count)
    res = result(status, cache_max_age=max_age, retry_after=None if retry_in is None else NOW + retry_in)
    new = advance(state, res, ttl=ttl, policy=policy, seed=seed)
    assert new.next_check is not None
    assert NOW + policy.min_interval <= new.next_check <= NOW + policy.max_interval
    assert new == advance(state, res, ttl=ttl, policy=policy, seed=seed)
    assert is_due(new, new.next_check)
    if status is FeedStatus.ERROR:
        assert new.error_count == error_count + 1
        if retry_in is not None:  # never sooner than the server asked (up to the cap)
            assert new.next_check >= NOW + min(retry_in, policy.max_retry_after, policy.max_interval)
    else:
        assert new.error_count == 0


@given(st.integers(min_value=1, max_value=200))
def test_backoff_never_shrinks_as_errors_accumulate(n: int) -> None:
    assert backoff_delay(n, EXACT) <= backoff_delay(n + 1, EXACT) <= EXACT.backoff_cap
