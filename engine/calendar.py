"""Due times on natural or working-time calendars (Chinese public holidays and make-up working days)."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

import chinese_calendar

from policy.models import CalendarKind


@lru_cache(maxsize=20_000)
def _library_workday(day: date) -> bool | None:
    """The library's answer, or None for a year it does not cover (it scans its tables per call)."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return None


class WorkCalendar:
    """`chinese-calendar` knows the State Council's holiday notices for the years it covers; for other
    years it raises, so those fall back to Monday–Friday plus admin-set overrides instead of crashing."""

    def __init__(self, overrides: dict[date, bool] | None = None):
        self.overrides = dict(overrides or {})
        self._after: dict[tuple[date, int], date] = {}  # (day, n) -> n-th working day after it
        self._offset: dict[tuple[date, int, int], timedelta] = {}  # (day, days, spill) -> added days

    def is_workday(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        known = _library_workday(day)
        return day.weekday() < 5 if known is None else known

    def covers(self, day: date) -> bool:
        """Whether the holiday data (library or overrides) knows this day's year."""
        return _library_workday(day) is not None or any(d.year == day.year for d in self.overrides)

    def add(self, start: datetime, duration: timedelta, kind: CalendarKind) -> datetime:
        """Natural time adds the duration. Working time counts whole days as working days and lands
        any remainder on a working day, so P3D from a Friday before a holiday skips the holiday."""
        if kind is CalendarKind.natural:
            return start + duration
        day = start.date()
        if duration.seconds or duration.microseconds:
            moved = start + (duration - timedelta(days=duration.days))
            spill = (moved.date() - day).days
        else:
            moved, spill = start, 0
        key = (day, duration.days, spill)
        offset = self._offset.get(key)
        if offset is None:  # the day arithmetic depends only on the key: memoised
            target = self._working_days_after(day, duration.days) + timedelta(days=spill)
            while not self.is_workday(target):
                target += timedelta(days=1)
            offset = self._offset[key] = target - day - timedelta(days=spill)
        return moved + offset

    def _working_days_after(self, day: date, count: int) -> date:
        key = (day, count)
        if key not in self._after:
            current, left = day, count
            while left > 0:
                current += timedelta(days=1)
                left -= self.is_workday(current)
            self._after[key] = current
        return self._after[key]
