"""Newsletter schedules: time zones, daylight-saving changes, and the one catch-up rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import load_config_text
from aggregator.errors import ConfigError
from aggregator.schedule import NewsletterTrigger, due_issue, last_fire_time, poll_wake


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


def test_every_time_in_the_skipped_hour_fires_even_when_asked_from_inside_it() -> None:
    # 02:00 and 02:30 do not exist in Paris on 2026-03-29: they fire at 03:00 and 03:30 CEST.
    # The search began at the wall time after the change, so asked at 03:10 CEST (a start,
    # a reload, or after the 03:00 fire) it skipped 03:30 and said tomorrow.
    twice = NewsletterTrigger("0,30 2 * * *", "Europe/Paris")
    assert fires(twice, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == [
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 1, 30),
    ]
    night = NewsletterTrigger("30 2 * * *", "Europe/Paris")
    assert night.get_next_fire_time(None, utc(2026, 3, 29, 1, 10)) == utc(2026, 3, 29, 1, 30)
    assert last_fire_time(night, utc(2026, 3, 29, 1, 40)) == utc(2026, 3, 29, 1, 30)


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


# Weekday numbers as cron reads them: 0 and 7 are Sunday, 1 is Monday (APScheduler 3 alone
# would read 0 as Monday and fire "1-5" from Tuesday to Saturday).
@pytest.mark.parametrize(
    ("schedule", "weekdays"),
    [
        ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 9 * * 1", ["Mon"]),
        ("0 9 * * 0", ["Sun"]),
        ("0 9 * * 7", ["Sun"]),
        ("0 9 * * 5-7", ["Sun", "Fri", "Sat"]),
        ("0 9 * * 7-7", ["Sun"]),
        ("0 9 * * */2", ["Sun", "Tue", "Thu", "Sat"]),
        ("0 9 * * 1,3,5", ["Mon", "Wed", "Fri"]),
        ("0 9 * * MON-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 9 * * sun", ["Sun"]),
    ],
)
def test_weekdays_are_the_days_cron_would_run(schedule: str, weekdays: list[str]) -> None:
    # 2026-12-06 is a Sunday: two weeks of fires, in London (UTC in winter).
    found = fires(NewsletterTrigger(schedule, "Europe/London"), utc(2026, 12, 6), utc(2026, 12, 19, 23))
    assert [f.strftime("%a") for f in found] == weekdays * 2
    assert all(f.hour == 9 for f in found)


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ("0 9 * * 8", "'8' is not a day"),
        ("0 9 * * fri-mon", "a range must run forwards"),
        ("0 9 * * 1/0", "the step after '/' must be a positive number"),
        ("0 9 1 * 1", "cron runs on either"),
        ("0 9 * *", "5 fields"),
    ],
)
def test_a_schedule_cron_and_this_scheduler_would_read_differently_is_refused(
    tmp_path: Path, schedule: str, words: str
) -> None:
    text = f'feeds: []\nnewsletters: [{{name: w, title: W, sender: w@example.org, schedule: "{schedule}"}}]'
    with pytest.raises(ConfigError) as raised:
        load_config_text(text, tmp_path / "feeds.yaml")
    assert words in str(raised.value)


def test_sunday_as_7_is_accepted_as_cron_accepts_it(tmp_path: Path) -> None:
    text = 'feeds: []\nnewsletters: [{name: w, title: W, sender: w@example.org, schedule: "0 9 * * 7"}]'
    assert load_config_text(text, tmp_path / "feeds.yaml").config.newsletters[0].schedule == "0 9 * * 7"


def test_a_midnight_issue_goes_out_every_day_across_the_spring_change() -> None:
    # APScheduler alone drops 30 March in Paris (the day after the clocks go forward) and
    # 9 March in New York: a whole day without its issue.
    paris = NewsletterTrigger("0 0 * * *", "Europe/Paris")
    found = fires(paris, utc(2026, 3, 27, 12), utc(2026, 4, 1, 12))
    days = [f.astimezone(paris.timezone).strftime("%m-%d") for f in found]
    assert days == ["03-28", "03-29", "03-30", "03-31", "04-01"]
    new_york = NewsletterTrigger("0 0 * * *", "America/New_York")
    days = [
        f.astimezone(new_york.timezone).strftime("%m-%d")
        for f in fires(new_york, utc(2026, 3, 6, 12), utc(2026, 3, 11, 12))
    ]
    assert days == ["03-07", "03-08", "03-09", "03-10", "03-11"]


def test_where_the_clocks_skip_midnight_that_days_issue_comes_an_hour_later() -> None:
    # America/Santiago goes from 00:00 to 01:00 on 6 September 2026.
    santiago = NewsletterTrigger("0 0 * * *", "America/Santiago")
    found = fires(santiago, utc(2026, 9, 4, 12), utc(2026, 9, 8, 12))
    assert [f.astimezone(santiago.timezone).strftime("%m-%d %H:%M") for f in found] == [
        "09-05 00:00", "09-06 01:00", "09-07 00:00", "09-08 00:00",
    ]  # fmt: skip


def test_in_the_repeated_hour_the_issue_already_sent_is_not_due_again() -> None:
    night = NewsletterTrigger("30 2 * * *", "Europe/Paris")  # 02:30 happens twice on 26 October 2025
    first = utc(2025, 10, 26, 0, 30)
    for minutes in range(0, 180, 15):
        assert due_issue(night, first, first + timedelta(minutes=minutes)) is None


def test_the_poll_job_wakes_at_the_next_check_never_before_it_nor_within_the_gap() -> None:
    tick, check = utc(2025, 8, 19, 9, 1), utc(2025, 8, 19, 9, 0, 40)
    # A next check before the tick: woken at it, to the microsecond (a Retry-After ends there).
    assert poll_wake(check, not_before=utc(2025, 8, 19, 9, 0, 10), next_tick=tick) == check
    # Within the minimum gap after the last cycle: at the gap's end, with what falls due by then.
    assert poll_wake(check, not_before=utc(2025, 8, 19, 9, 0, 45), next_tick=tick) == utc(
        2025, 8, 19, 9, 0, 45
    )
    # The regular tick comes first (or as soon), no feed has a next check, the job is paused.
    assert poll_wake(utc(2025, 8, 19, 9, 5), not_before=check, next_tick=tick) is None
    assert poll_wake(check, not_before=tick, next_tick=tick) is None
    assert poll_wake(None, not_before=check, next_tick=tick) is None
    assert poll_wake(check, not_before=check, next_tick=None) is None
