"""Newsletter schedules: time zones, daylight-saving changes, and the one catch-up rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aggregator.schedule import NewsletterTrigger, due_issue, last_fire_time


def fires(trigger: NewsletterTrigger, start: datetime, end: datetime) -> list[datetime]:
    found, fire = [], trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= end:
        found.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire)
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_morning_issue_follows_local_time_across_the_autumn_change() -> None:
    paris = NewsletterTrigger("0 7 * * *", "Europe/Paris")
    # 07:00 CEST is 05:00 UTC; after the clocks go back on 26 October, 07:00 CET is 06:00 UTC.
    assert fires(paris, utc(2025, 10, 25), utc(2025, 10, 27, 23)) == [
        utc(2025, 10, 25, 5),
        utc(2025, 10, 26, 6),
        utc(2025, 10, 27, 6),
    ]


def test_the_repeated_hour_in_autumn_sends_one_issue_not_two() -> None:
    night = NewsletterTrigger("30 2 * * *", "Europe/Paris")
    # 02:30 happens twice on 26 October 2025 (00:30 and 01:30 UTC); only the first counts.
    assert fires(night, utc(2025, 10, 25, 12), utc(2025, 10, 27, 12)) == [
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 27, 1, 30),
    ]


def test_hourly_schedules_keep_running_by_real_time_through_the_repeated_hour() -> None:
    hourly = NewsletterTrigger("0 * * * *", "Europe/Paris")
    got = fires(hourly, utc(2025, 10, 25, 23, 30), utc(2025, 10, 26, 3, 30))
    assert got == [utc(2025, 10, 26, h) for h in range(4)]


def test_the_skipped_hour_in_spring_still_sends_that_day() -> None:
    night = NewsletterTrigger("30 2 * * *", "Europe/Paris")
    got = fires(night, utc(2025, 3, 29, 12), utc(2025, 3, 31, 12))
    assert len(got) == 2
    assert got[0].date() == datetime(2025, 3, 30).date()


def test_last_fire_time_looks_back_across_days_and_stops_at_the_lookback() -> None:
    weekly = NewsletterTrigger("0 9 * * mon", "America/New_York")
    now = utc(2025, 8, 20, 12)  # a Wednesday
    assert last_fire_time(weekly, now) == utc(2025, 8, 18, 13)  # Monday 09:00 EDT
    assert last_fire_time(weekly, now, lookback=timedelta(days=1)) is None
    every_minute = NewsletterTrigger("* * * * *", "UTC")
    assert last_fire_time(every_minute, utc(2025, 8, 20, 12, 0, 30)) == utc(2025, 8, 20, 12)


def test_many_missed_issues_give_one_catch_up_of_the_latest() -> None:
    daily = NewsletterTrigger("0 7 * * *", "UTC")
    now = utc(2025, 8, 20, 10)
    # The last issue ended three days ago: one issue, the one of this morning.
    assert due_issue(daily, utc(2025, 8, 17, 7), now) == utc(2025, 8, 20, 7)
    # This morning's issue is out already: nothing.
    assert due_issue(daily, utc(2025, 8, 20, 7, 0, 2), now) is None
    # Never sent: the latest scheduled time is due (the job fired for it).
    assert due_issue(daily, None, now) == utc(2025, 8, 20, 7)
    # Down for longer than the grace: the next regular issue picks up from the last one.
    assert due_issue(daily, utc(2025, 8, 1, 7), now, lookback=timedelta(hours=2)) is None
