"""Standard crontab lines for APScheduler 3, whose day-of-week numbers are not cron's.

Pure: text in, text out.  ``feeds.yaml`` takes a newsletter's ``schedule`` as a crontab line
(minute hour day month weekday), and in cron 0 (and 7) is Sunday, 1 Monday.
APScheduler 3's ``CronTrigger.from_crontab`` counts 0 as *Monday* (agronholm/apscheduler#286,
kept as is in 3.x), so ``0 9 * * 1-5`` would fire Tuesday to Saturday.  Here the weekday
field is read as cron reads it and handed on as day names, which APScheduler reads right.
"""

from __future__ import annotations

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's 0..6 (7 is Sunday again)


def for_apscheduler(schedule: str) -> str:
    """``schedule`` with its weekday field as day names; ``ValueError`` says what is wrong.

    Only the weekday field changes; APScheduler still checks the other four.
    """
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab line has 5 fields (minute hour day month weekday), not {len(fields)}")
    day, weekday = fields[2], fields[4]
    if weekday == "*":
        return " ".join(fields)
    if not day.startswith("*") and not weekday.startswith("*"):
        # cron fires when either matches; APScheduler only when both do.
        raise ValueError(
            f"day of month {day!r} and weekday {weekday!r} are both set: cron runs on either, "
            "which this scheduler cannot do; keep one of them (use * in the other)"
        )
    days = sorted(set().union(*(_days(part) for part in weekday.split(","))))
    return " ".join([*fields[:4], ",".join(DAY_NAMES[d] for d in days)])


def _days(part: str) -> set[int]:
    """The days (0 = Sunday .. 6) of one comma-separated part: ``*``, ``N``, ``A-B``, each with ``/step``."""
    base, _, step_text = part.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ValueError(f"weekday {part!r}: the step after '/' must be a positive number")
        step = int(step_text)
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        start, _, end = base.partition("-")
        first, last = _day(start, part), _day(end, part)
        # 7 is Sunday at the end of the week: "5-7" is Friday to Sunday, "7-7" Sunday alone.
        if end.strip() == "7":
            last = 7
        if start.strip() == "7":
            first = 7
        if first > last:
            raise ValueError(f"weekday {part!r}: a range must run forwards (0 or 7 is Sunday)")
    else:
        first = last = _day(base, part)
        if step_text:
            last = 6  # "1/2": from Monday, every other day, as cron reads it
    return {day % 7 for day in range(first, last + 1, step)}


def _day(text: str, part: str) -> int:
    word = text.strip().lower()
    if word.isdigit() and int(word) <= 7:
        return int(word) % 7
    if word in DAY_NAMES:
        return DAY_NAMES.index(word)
    raise ValueError(f"weekday {part!r}: {text!r} is not a day (0-7, 0 or 7 = Sunday, or sun..sat)")
