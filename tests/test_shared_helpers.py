"""The helpers every part shares: one capped backoff, one RFC 3339 reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from swimmy.backoff import backoff_for_attempt, capped_backoff
from swimmy.rfc3339 import NoTimeZone, parse_rfc3339


class TestBackoff:
    def test_doubles_from_base_to_cap(self) -> None:
        waits, previous = [], None
        for _ in range(8):
            previous = capped_backoff(previous, base_sec=1.0, cap_sec=60.0)
            waits.append(previous)
        assert waits == [1, 2, 4, 8, 16, 32, 60, 60]

    def test_by_attempt_is_the_same_sequence(self) -> None:
        by_previous, previous = [], None
        for _ in range(12):
            previous = capped_backoff(previous, base_sec=0.05, cap_sec=5.0)
            by_previous.append(previous)
        assert [backoff_for_attempt(a, base_sec=0.05, cap_sec=5.0) for a in range(1, 13)] == by_previous

    def test_first_wait_never_above_cap_and_huge_attempts_stay_finite(self) -> None:
        assert capped_backoff(None, base_sec=10.0, cap_sec=3.0) == 3.0
        assert capped_backoff(0.0, base_sec=1.0, cap_sec=3.0) == 1.0
        assert backoff_for_attempt(10_000, base_sec=1.0, cap_sec=60.0) == 60.0


class TestRfc3339:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-26T18:35:20Z", datetime(2026, 11, 26, 18, 35, 20, tzinfo=UTC)),
            ("2026-11-26T18:35:20.250+09:00",
             datetime(2026, 11, 26, 18, 35, 20, 250_000, tzinfo=timezone(timedelta(hours=9)))),
            (" 2026-11-26T18:35:20+00:00 ", datetime(2026, 11, 26, 18, 35, 20, tzinfo=UTC)),
        ],
    )
    def test_reads_zoned_times(self, text: str, expected: datetime) -> None:
        assert parse_rfc3339(text) == expected

    def test_a_time_without_a_zone(self) -> None:
        with pytest.raises(NoTimeZone, match="no time zone"):
            parse_rfc3339("2026-11-26T18:35:20")
        assert parse_rfc3339("2026-11-26T18:35:20", assume_utc=True) == datetime(2026, 11, 26, 18, 35, 20,
                                                                                  tzinfo=UTC)

    @pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", ""])
    def test_not_a_time(self, text: str) -> None:
        with pytest.raises(ValueError) as err:
            parse_rfc3339(text)
        assert not isinstance(err.value, NoTimeZone)


class TestTheirUsers:
    """The CLI's words for a bad time stay as they were."""

    def test_tail_since(self) -> None:
        from swimmy.cli.tail import parse_since

        assert parse_since("2026-11-26T18:35:20Z", now=0.0) == datetime(2026, 11, 26, 18, 35, 20,
                                                                         tzinfo=UTC).timestamp()
        with pytest.raises(ValueError, match=r"'2026-11-26T18:35:20' has no time zone: add Z or an offset"):
            parse_since("2026-11-26T18:35:20", now=0.0)
        with pytest.raises(ValueError, match=r"cannot read 'soon' as a time: expected an age such as 30s"):
            parse_since("soon", now=0.0)

    def test_backtest_from_to(self) -> None:
        from swimmy.cli.backtest import parse_date
        from swimmy.errors import UsageError

        assert parse_date("2017-01-02", "--from") == 1483315200
        assert parse_date("2017-01-02T01:00:00+01:00", "--from") == 1483315200
        with pytest.raises(UsageError, match=r"--to: '2017-01-02T00:00:00' has no time zone; add Z or \+00:00"):
            parse_date("2017-01-02T00:00:00", "--to")
        with pytest.raises(UsageError, match=r"--to: expected YYYY-MM-DD or an RFC 3339 time, got 'x'"):
            parse_date("x", "--to")
