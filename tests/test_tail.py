"""swimmy tail: filters, --since parsing, the readable line, and reading files without following."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from swimmy.cli.tail import TailFilter, format_event, parse_since, run_tail

T0 = datetime(2026, 11, 26, 18, 35, 20, 123000, tzinfo=UTC).timestamp()


def stamp(t: float) -> str:
    """The envelope's RFC 3339 form of Unix seconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(
    seq: int = 1,
    *,
    t: float = T0,
    event_type: str = "wfv.started",
    service: str = "school",
    severity: str = "info",
    cid: str = "wfv-1",
    data: Any = None,
    log_type: str = "telemetry",
) -> dict[str, Any]:
    """One envelope as the writer makes it (SPEC §2.1)."""
    return {
        "schema_version": 1,
        "timestamp": stamp(t),
        "log_type": log_type,
        "event_type": event_type,
        "service": service,
        "severity": severity,
        "correlation_id": cid,
        "data": {} if data is None else data,
        "seq": seq,
        "pid": 4242,
        "host": "fish",
        "run_id": "00000000-0000-4000-8000-000000000000",
    }


def line(ev: dict[str, Any]) -> bytes:
    """The JSONL line for an envelope."""
    return orjson.dumps(ev) + b"\n"


def seqs_of(text: str) -> list[int]:
    """The seq of every --json line printed."""
    return [orjson.loads(raw)["seq"] for raw in text.splitlines()]


class TestFilter:
    """TailFilter.matches: every condition set must hold."""

    @pytest.mark.parametrize(
        ("filt", "ev", "expected"),
        [
            (TailFilter(), event(), True),
            (TailFilter(event_glob="wfv.*"), event(event_type="wfv.started"), True),
            (TailFilter(event_glob="wfv.*"), event(event_type="oos.started"), False),
            (TailFilter(event_glob="*.failed"), event(event_type="backtest.failed"), True),
            (TailFilter(event_glob="wfv.started"), event(event_type="wfv.started.extra"), False),
            (TailFilter(event_glob="WFV.*"), event(event_type="wfv.started"), False),
            (TailFilter(min_severity="warning"), event(severity="info"), False),
            (TailFilter(min_severity="warning"), event(severity="warning"), True),
            (TailFilter(min_severity="warning"), event(severity="critical"), True),
            (TailFilter(min_severity="debug"), event(severity="debug"), True),
            (TailFilter(min_severity="error"), event(severity="warning"), False),
            (TailFilter(min_severity="ERROR"), event(severity="error"), True),
            (TailFilter(service="school"), event(service="school"), True),
            (TailFilter(service="school"), event(service="schoolyard"), False),
            (TailFilter(correlation_id="wfv-1"), event(cid="wfv-1"), True),
            (TailFilter(correlation_id="wfv-1"), event(cid="wfv-10"), False),
            (TailFilter(since=T0), event(t=T0), True),
            (TailFilter(since=T0), event(t=T0 + 60), True),
            (TailFilter(since=T0), event(t=T0 - 1), False),
            (TailFilter(since=T0), {**event(), "timestamp": "yesterday"}, False),
            (TailFilter(service="school", min_severity="error"), event(service="school", severity="error"), True),
            (TailFilter(service="school", min_severity="error"), event(service="engine", severity="error"), False),
        ],
    )
    def test_matches(self, filt: TailFilter, ev: dict[str, Any], expected: bool) -> None:
        """Glob, severity minimum, service, correlation id and since each hide what they should."""
        assert filt.matches(ev) is expected

    def test_missing_keys_never_raise(self) -> None:
        """An object without envelope keys is simply not matched by conditions that need them."""
        filt = TailFilter(event_glob="*", min_severity="debug", service="school", correlation_id="x", since=T0)
        assert filt.matches({}) is False

    def test_unknown_severity_is_refused(self) -> None:
        """A minimum severity outside the five names is a usage error that names the choices."""
        with pytest.raises(ValueError, match="debug, info, warning, error, critical"):
            TailFilter(min_severity="loud")


class TestParseSince:
    """parse_since: an age relative to now, or an RFC 3339 time."""

    NOW = 1_800_000_000.0

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30s", NOW - 30),
            ("10m", NOW - 600),
            ("2h", NOW - 7200),
            ("1d", NOW - 86400),
            ("0s", NOW),
            ("1.5h", NOW - 5400),
            ("2026-11-26T18:35:20.123Z", T0),
            ("2026-11-27T03:35:20.123+09:00", T0),
        ],
    )
    def test_parses(self, text: str, expected: float) -> None:
        """Ages count back from now; timestamps are absolute."""
        assert parse_since(text, self.NOW) == pytest.approx(expected)

    @pytest.mark.parametrize("text", ["", "10", "m", "10x", "-5m", "ten minutes", "2026-13-01T00:00:00Z"])
    def test_bad_input_raises(self, text: str) -> None:
        """Anything else is a ValueError that says what is accepted."""
        with pytest.raises(ValueError, match="10m"):
            parse_since(text, self.NOW)

    def test_zoneless_timestamp_raises(self) -> None:
        """A timestamp without a zone is ambiguous, so it is refused."""
        with pytest.raises(ValueError, match="time zone"):
            parse_since("2026-11-26T18:35:20", self.NOW)


class TestFormatEvent:
    """format_event: one readable line."""

    @pytest.mark.parametrize(
        ("ev", "expected"),
        [
            (
                event(cid="wfv-1", data={"strategy": "trend-7", "folds": 5}),
                "2026-11-26T18:35:20.123Z INFO     school wfv.started cid=wfv-1 strategy=trend-7 folds=5",
            ),
            (
                event(event_type="heartbeat.sent", service="core", cid="unknown"),
                "2026-11-26T18:35:20.123Z INFO     core heartbeat.sent",
            ),
            (
                event(severity="critical", data={"reason": "too few trades", "ok": False, "ids": [1, 2]}),
                '2026-11-26T18:35:20.123Z CRITICAL school wfv.started cid=wfv-1 reason="too few trades" ok=false'
                " ids=[1,2]",
            ),
            (
                event(data={"empty": "", "none": None, "nested": {"a": 1}, "eq": "a=b"}),
                '2026-11-26T18:35:20.123Z INFO     school wfv.started cid=wfv-1 empty="" none=null nested={"a":1}'
                ' eq="a=b"',
            ),
            (
                event(
                    log_type="log",
                    event_type="log",
                    severity="warning",
                    cid="unknown",
                    data={"message": "cycle took 12 s", "logger": "swimmy.school"},
                ),
                "2026-11-26T18:35:20.123Z WARNING  school log cycle took 12 s logger=swimmy.school",
            ),
            (
                event(log_type="log", event_type="log", cid="unknown", data={"message": "line one\nline two"}),
                '2026-11-26T18:35:20.123Z INFO     school log "line one\\nline two"',
            ),
            (
                event(event_type="log", cid="unknown", data={"message": "not a log line"}),
                '2026-11-26T18:35:20.123Z INFO     school log message="not a log line"',
            ),
            ({"data": [1, 2]}, "? ?        ? ? data=[1,2]"),
        ],
    )
    def test_format(self, ev: dict[str, Any], expected: str) -> None:
        """cid shown unless 'unknown', values JSON-encoded unless plain, a log line leads with its message."""
        assert format_event(ev) == expected


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """Where the telemetry file lives in these tests."""
    return tmp_path / "telemetry.jsonl"


def write_file(path: Path, *events: dict[str, Any], mtime: float | None = None) -> None:
    """Write whole lines and optionally set the file's mtime."""
    path.write_bytes(b"".join(line(ev) for ev in events))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


class TestRunTail:
    """run_tail without follow: which existing lines are printed, and how."""

    def test_last_n_matching(self, log_path: Path) -> None:
        """The last N events that match the filter are printed, oldest first."""
        write_file(log_path, *(event(i, service="school" if i % 2 else "engine") for i in range(1, 21)))
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(service="school"), lines=3, as_json=True, out=out) == 0
        assert seqs_of(out.getvalue()) == [15, 17, 19]

    @pytest.mark.parametrize(("lines", "expected"), [(0, []), (2, [4, 5]), (10, [1, 2, 3, 4, 5]), (-1, [])])
    def test_lines_limit(self, log_path: Path, lines: int, expected: list[int]) -> None:
        """`lines` bounds the existing events printed; 0 (or less) prints none."""
        write_file(log_path, *(event(i) for i in range(1, 6)))
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(), lines=lines, as_json=True, out=out) == 0
        assert seqs_of(out.getvalue()) == expected

    def test_since_reads_backups_oldest_first(self, log_path: Path) -> None:
        """With since, backups written since then are read from the highest suffix down, then the live file."""
        old = T0 - 7200
        write_file(log_path.with_name(log_path.name + ".3"), event(1, t=old), event(2, t=old), mtime=old)
        write_file(log_path.with_name(log_path.name + ".2"), event(3, t=old), event(4, t=T0 + 1), mtime=T0 + 1)
        write_file(log_path.with_name(log_path.name + ".1"), *(event(i, t=T0 + i) for i in range(5, 25)))
        write_file(log_path, event(25, t=T0 + 25), event(26, t=T0 + 26))
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(since=T0), lines=1, as_json=True, out=out) == 0
        assert seqs_of(out.getvalue()) == list(range(4, 27))

    def test_since_applies_the_filter_to_backups(self, log_path: Path) -> None:
        """The other conditions hold in the backups too."""
        write_file(log_path.with_name(log_path.name + ".1"), event(1, severity="error"), event(2), mtime=T0)
        write_file(log_path, event(3, severity="critical"), event(4, severity="debug"))
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(since=T0 - 1, min_severity="error"), as_json=True, out=out) == 0
        assert seqs_of(out.getvalue()) == [1, 3]

    def test_json_prints_raw_lines(self, log_path: Path) -> None:
        """--json prints each line exactly as it is in the file."""
        raw = b'{"seq":1,  "severity":"info", "data":{"b":1,"a":2}}\n{"seq":2,"data":{}}\n'
        log_path.write_bytes(raw)
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(), as_json=True, out=out) == 0
        assert out.getvalue().encode() == raw

    def test_readable_by_default(self, log_path: Path) -> None:
        """Without --json each event is one format_event line."""
        evs = [event(1, data={"n": 1}), event(2, cid="unknown")]
        write_file(log_path, *evs)
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(), out=out) == 0
        assert out.getvalue().splitlines() == [format_event(ev) for ev in evs]

    def test_garbage_line_does_not_kill_it(self, log_path: Path) -> None:
        """A line that is not a JSON object is shown with `?`, bypasses the filter, and the rest still prints."""
        log_path.write_bytes(line(event(1)) + b"{not json\n" + b"[1, 2]\n" + b"\xff\xfe\n" + b"\n" + line(event(2)))
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(service="school"), out=out) == 0
        assert out.getvalue().splitlines() == [
            format_event(event(1)),
            "? {not json",
            "? [1, 2]",
            "? \ufffd\ufffd",
            format_event(event(2)),
        ]

    def test_garbage_line_is_skipped_in_json_mode(self, log_path: Path) -> None:
        """--json output stays valid JSON Lines."""
        log_path.write_bytes(line(event(1)) + b"{not json\n" + line(event(2)))
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(), as_json=True, out=out) == 0
        assert seqs_of(out.getvalue()) == [1, 2]

    def test_partial_last_line_is_not_printed(self, log_path: Path) -> None:
        """A line still being written (no newline yet) is not an event yet."""
        log_path.write_bytes(line(event(1)) + line(event(2))[:-10])
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(), as_json=True, out=out) == 0
        assert seqs_of(out.getvalue()) == [1]

    def test_missing_file_returns_1(self, log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without follow, a file that does not exist is exit code 1 and a message on stderr."""
        out = io.StringIO()
        assert run_tail(log_path, TailFilter(), out=out) == 1
        assert out.getvalue() == ""
        assert str(log_path) in capsys.readouterr().err

    def test_keyboard_interrupt_exits_0(self, log_path: Path) -> None:
        """Ctrl-C while printing ends the tail cleanly with exit code 0."""

        class Interrupting(io.StringIO):
            def write(self, s: str) -> int:
                raise KeyboardInterrupt

        write_file(log_path, event(1))
        assert run_tail(log_path, TailFilter(), out=Interrupting()) == 0

    def test_broken_pipe_exits_0(self, log_path: Path) -> None:
        """A reader that went away (`| head`) ends the tail with exit code 0."""

        class Closed(io.StringIO):
            def write(self, s: str) -> int:
                raise BrokenPipeError

        write_file(log_path, event(1))
        assert run_tail(log_path, TailFilter(), out=Closed()) == 0

    def test_default_out_is_the_current_stdout(self, log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without `out`, lines go to sys.stdout as it is at the call, not as it was at import."""
        write_file(log_path, event(1))
        assert run_tail(log_path, TailFilter(), as_json=True) == 0
        assert seqs_of(capsys.readouterr().out) == [1]
