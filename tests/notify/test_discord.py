"""The Discord notifier against a loopback webhook: outcomes, attempts, rate limits, the queue, and no leaked URL."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from typing import Any

import orjson
import pytest
from discordkit import (
    FAST,
    TOKEN,
    RecordingClock,
    Reply,
    WebhookServer,
    alert,
    closed_port,
    events_for,
    heartbeat,
    make,
    running,
    settled,
    until,
)

from swimmy.config import DiscordConfig, Secret
from swimmy.notify.discord import (
    CONTENT_MAX,
    DESCRIPTION_MAX,
    TITLE_MAX,
    DiscordNotifier,
    Notification,
    RateLimit,
    RetryPolicy,
    backoff_sec,
    build_payload,
    cut,
    describe_error,
    heartbeat_notification,
    read_rate_limit,
    scrub,
    secret_fragments,
    summary_notification,
    title_head,
)
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.logbridge import configure_logging, reset_logging
from swimmy.telemetry.queue import EventQueue
from swimmy.testing import CapturingEmitter, FakeClock

MUL = "\N{MULTIPLICATION SIGN}"  # the sign in a burst's title, spelled out so ruff's RUF001 does not take it for x


# -- pure steps ---------------------------------------------------------------------------------


class TestPayload:
    @pytest.mark.parametrize(
        ("text", "limit", "expected"),
        [
            ("short", 10, "short"),
            ("x" * 10, 10, "x" * 10),
            ("x" * 11, 10, "x" * 9 + "…"),
            ("😀" * 6, 10, "😀" * 4 + "…"),  # an astral character is two UTF-16 units
            ("", 5, ""),
        ],
    )
    def test_cut_keeps_text_within_the_limit(self, text: str, limit: int, expected: str) -> None:
        """Text over a limit is cut to limit-1 units plus an ellipsis; shorter text is untouched."""
        assert cut(text, limit) == expected

    def test_embed_is_cut_to_discords_limits(self) -> None:
        """Title, description and content are cut to 256 / 4,096 / 2,000 and the whole stays under 6,000."""
        n = Notification(kind="peer.silent", title="t" * 1000, description="d" * 10_000, subject="s" * 1000)
        payload = build_payload(n, timestamp="2027-01-01T00:00:00+00:00", content="c" * 5000)
        embed = payload["embeds"][0]
        assert len(embed["title"]) == TITLE_MAX and embed["title"].endswith("…")
        assert len(embed["description"]) == DESCRIPTION_MAX
        assert len(payload["content"]) == CONTENT_MAX
        total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
        assert total <= 6000

    @pytest.mark.parametrize(
        ("severity", "colour"),
        [("info", 0x3498DB), ("warning", 0xE67E22), ("error", 0xE74C3C), ("critical", 0x992D22), ("odd", 0x95A5A6)],
    )
    def test_colour_follows_severity(self, severity: str, colour: int) -> None:
        """The embed colour is chosen by severity; an unknown one is grey."""
        n = Notification(kind="worker.exited", title="t", description="d", severity=severity)
        assert build_payload(n, timestamp="x")["embeds"][0]["color"] == colour

    def test_shape_names_kind_and_subject_and_disables_mentions(self) -> None:
        """One embed, footer 'swimmy · kind · subject', username swimmy, no mentions parsed, no content."""
        n = Notification(kind="oos.promoted", title="promoted", description="to A", subject="trend-7")
        payload = build_payload(n, timestamp="2027-01-01T00:00:00+00:00")
        assert payload == {
            "username": "swimmy",
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": "promoted",
                "description": "to A",
                "color": 0x3498DB,
                "timestamp": "2027-01-01T00:00:00+00:00",
                "footer": {"text": "swimmy · oos.promoted · trend-7"},
            }],
        }

    def test_empty_embed_is_never_sent(self) -> None:
        """A notification without title or description gets its kind as description (Discord refuses empty)."""
        n = Notification(kind="daemon.started", title="", description="")
        assert build_payload(n, timestamp="x")["embeds"][0]["description"] == "daemon.started"


    @pytest.mark.parametrize(("status", "severity"), [("OK", "info"), ("DEGRADED", "warning")])
    def test_heartbeat_summary(self, status: str, severity: str) -> None:
        """The heartbeat names its status in the title and lists one figure a line, in order."""
        n = heartbeat_notification(status, {"uptime": "1h 2m", "strategies": "S 1 · A 3 · B 20", "peers": 2})
        assert (n.kind, n.title, n.severity) == ("heartbeat", f"swimmy heartbeat: {status}", severity)
        assert n.description == "**uptime**: 1h 2m\n**strategies**: S 1 · A 3 · B 20\n**peers**: 2"


class TestRateLimitHeaders:
    @pytest.mark.parametrize(
        ("headers", "body", "expected"),
        [
            ({}, None, RateLimit()),
            ({"Retry-After": "1"}, {"retry_after": 0.3}, RateLimit(retry_after_sec=1.0)),
            ({"Retry-After": "1"}, {"retry_after": 2.5}, RateLimit(retry_after_sec=2.5)),
            ({}, {"retry_after": 0.3, "global": True}, RateLimit(retry_after_sec=0.3, is_global=True)),
            (
                {"x-ratelimit-remaining": "0", "X-RateLimit-Reset-After": "0.4", "X-RateLimit-Bucket": "abc"},
                None,
                RateLimit(remaining=0, reset_after_sec=0.4, bucket="abc"),
            ),
            ({"X-RateLimit-Scope": "global"}, None, RateLimit(scope="global", is_global=True)),
            (
                {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "user"},
                None,
                RateLimit(scope="user", is_global=True),
            ),
            ({"Retry-After": "soon", "X-RateLimit-Remaining": "x"}, {"retry_after": "nan"}, RateLimit()),
            ({"Retry-After": "-3"}, {"retry_after": True}, RateLimit()),
        ],
    )
    def test_reads_headers_and_body(self, headers: dict[str, str], body: Any, expected: RateLimit) -> None:
        """Headers are case-insensitive; the retry-after is the longer of header and body; junk is ignored."""
        assert read_rate_limit(headers, body) == expected

    @pytest.mark.parametrize(("attempt", "wait"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (500, 60.0)])
    def test_backoff_doubles_and_is_capped(self, attempt: int, wait: float) -> None:
        """The default backoff is 1 s doubling per failed attempt, capped at 60 s."""
        assert backoff_sec(attempt, RetryPolicy()) == wait


class TestSecretsPure:
    def test_scrub_removes_url_path_and_token(self) -> None:
        """Every form of the URL, its path and its token are replaced by ***."""
        url = "https://discord.com/api/webhooks/123456/abcdefghijklmnopqrstuvwxyz_0123456789"
        frags = secret_fragments([Secret(url)])
        text = f"POST {url} failed; path /api/webhooks/123456/abcdefghijklmnopqrstuvwxyz_0123456789; token " \
               "abcdefghijklmnopqrstuvwxyz_0123456789"
        out = scrub({"error": text, "list": [text], "n": 3}, frags)
        assert "abcdefghijklmnopqrstuvwxyz" not in orjson.dumps(out).decode()
        assert out["n"] == 3

    def test_error_texts_never_carry_the_url(self) -> None:
        """describe_error builds its text from the class and errno, never from str(exc)."""
        import aiohttp

        exc = aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey(f"x{TOKEN}", 1, False, True, None, None, None),
            ConnectionRefusedError(111, f"refused {TOKEN}"),
        )
        assert describe_error(exc) == ("connection_error", "ClientConnectorError: Connection refused", True)
        assert describe_error(aiohttp.InvalidUrlClientError(f"http://[{TOKEN}")) == (
            "invalid_url", "InvalidUrlClientError", False)
        assert describe_error(TimeoutError()) == ("timeout", "TimeoutError", True)


# -- delivery against the loopback webhook ------------------------------------------------------


class TestDelivery:
    async def test_204_is_delivered_after_one_attempt(self, server: WebhookServer) -> None:
        """A 204 gives discord.delivered with attempts 1 and status 204; the body is the embed."""
        emitter = CapturingEmitter()
        n = alert(title="hello")
        async with running(make(emitter, alerts=server.url())) as notifier:
            assert notifier.submit(n)
            await settled(emitter, n.id)
        assert [t for t, _ in events_for(emitter, n)] == ["discord.delivered"]
        data = emitter.of_type("discord.delivered")[0].data
        assert (data["kind"], data["attempts"], data["status_code"]) == ("peer.silent", 1, 204)
        assert emitter.of_type("discord.delivered")[0].service == "notifier"
        assert len(server.requests) == 1
        assert server.requests[0].body["embeds"][0]["title"] == "hello"
        assert notifier.stats.delivered == 1 and notifier.stats.failed == 0

    async def test_429_waits_the_longer_retry_after_then_delivers(self, server: WebhookServer) -> None:
        """429 (body 0.3 s, header 1 s) gives discord.rate_limited, then delivery on attempt 2 at least 1 s later."""
        server.script = [Reply(429, {"Retry-After": "1", "X-RateLimit-Scope": "user"},
                               {"message": "You are being rate limited.", "retry_after": 0.3, "global": False})]
        emitter, clock = CapturingEmitter(), RecordingClock()
        n = alert()
        async with running(make(emitter, alerts=server.url(), clock=clock)) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        assert [t for t, _ in events_for(emitter, n)] == ["discord.rate_limited", "discord.delivered"]
        limited = emitter.of_type("discord.rate_limited")[0]
        assert limited.severity == "warning"
        assert limited.data["retry_after_sec"] == 1.0 and limited.data["scope"] == "user"
        assert limited.data["attempts"] == 1
        assert emitter.of_type("discord.delivered")[0].data["attempts"] == 2
        first, second = server.requests
        assert second.at - first.at >= 1.0 - 0.01
        assert sum(clock.sleeps) >= 0.99  # the wait went through the injected clock
        assert notifier.stats.rate_limited == 1

    async def test_a_long_retry_after_is_waited_on_the_injected_clock(self, server: WebhookServer) -> None:
        """A 429 asking for 30 s sends nothing more until the (fake) clock has moved 30 s, then delivers."""
        server.script = [Reply(429, {"Retry-After": "30"}, {"retry_after": 29.5})]
        emitter, clock = CapturingEmitter(), FakeClock()
        n = alert()
        async with running(make(emitter, alerts=server.url(), clock=clock)) as notifier:
            notifier.submit(n)
            await until(lambda: emitter.of_type("discord.rate_limited"))
            clock.advance(29.9)
            await asyncio.sleep(0.2)
            assert len(server.requests) == 1
            clock.advance(0.1)
            await settled(emitter, n.id)
        assert emitter.of_type("discord.delivered")[0].data["attempts"] == 2
        assert len(server.requests) == 2

    async def test_remaining_zero_holds_the_next_request_until_reset(self, server: WebhookServer) -> None:
        """X-RateLimit-Remaining 0 with Reset-After 0.4 on a 204 makes the next request wait >= 0.4 s, no 429."""
        server.script = [Reply(204, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.4",
                                     "X-RateLimit-Bucket": "b1"})]
        emitter = CapturingEmitter()
        a, b = alert(subject="one"), alert(subject="two", kind="peer.recovered")  # two kinds: two messages
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(a)
            notifier.submit(b)
            await settled(emitter, a.id, b.id)
        assert len(server.requests) == 2
        assert server.requests[1].at - server.requests[0].at >= 0.4 - 0.01
        assert not emitter.of_type("discord.rate_limited")

    async def test_buckets_are_per_url(self, server: WebhookServer) -> None:
        """An exhausted heartbeat URL does not hold a request to the alerts URL."""
        server.script = [Reply(204, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "5"})]
        emitter = CapturingEmitter()
        hb, al = heartbeat(), alert()
        notifier = make(emitter, heartbeat=server.url("1"), alerts=server.url("2"))
        async with running(notifier):
            notifier.submit(hb)
            notifier.submit(al)
            await settled(emitter, hb.id, al.id, timeout_sec=3)
        assert [r.path.split("/")[3] for r in server.requests] == ["1", "2"]
        assert server.requests[1].at - server.requests[0].at < 1.0

    async def test_500_then_204_is_delivered_on_attempt_2(self, server: WebhookServer) -> None:
        """A 5xx is retried after the backoff; delivered says attempts 2."""
        server.script = [Reply(500), Reply(204)]
        emitter = CapturingEmitter()
        n = alert()
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        data = emitter.of_type("discord.delivered")[0].data
        assert (data["attempts"], data["status_code"]) == (2, 204)
        assert len(server.requests) == 2
        assert server.requests[1].at - server.requests[0].at >= FAST.backoff_base_sec - 0.01

    async def test_5xx_until_max_attempts_fails(self, server: WebhookServer) -> None:
        """Five hundreds on every attempt end in discord.failed, reason server_error, after max_attempts."""
        server.script = [Reply(503)] * 10
        emitter = CapturingEmitter()
        n = alert()
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        failed = emitter.of_type("discord.failed")[0]
        assert failed.severity == "error"
        assert (failed.data["attempts"], failed.data["status_code"], failed.data["reason"]) == (3, 503, "server_error")
        assert len(server.requests) == 3

    async def test_slow_answers_time_out_and_fail_after_max_attempts(self, server: WebhookServer) -> None:
        """An answer slower than timeout_sec is a timeout, retried, then discord.failed reason timeout."""
        server.script = [Reply(204, delay_sec=2.0)] * 3
        emitter = CapturingEmitter()
        n = alert()
        async with running(make(emitter, alerts=server.url(), timeout_sec=0.3)) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        failed = emitter.of_type("discord.failed")[0]
        assert (failed.data["attempts"], failed.data["status_code"], failed.data["reason"]) == (3, None, "timeout")
        assert failed.data["error"] == "TimeoutError: no answer within 0.3 s"
        assert len(server.requests) == 3
        assert not emitter.of_type("discord.delivered")

    async def test_slow_then_fast_is_delivered(self, server: WebhookServer) -> None:
        """A timed-out attempt followed by a prompt 204 is delivered on attempt 2."""
        server.script = [Reply(204, delay_sec=2.0), Reply(204)]
        emitter = CapturingEmitter()
        n = alert()
        async with running(make(emitter, alerts=server.url(), timeout_sec=0.3)) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        assert [t for t, _ in events_for(emitter, n)] == ["discord.delivered"]
        assert emitter.of_type("discord.delivered")[0].data["attempts"] == 2

    async def test_404_fails_at_once(self, server: WebhookServer) -> None:
        """A 404 (deleted webhook) is discord.failed after 1 attempt, with Discord's code and message."""
        server.script = [Reply(404, body={"message": "Unknown Webhook", "code": 10015})]
        emitter = CapturingEmitter()
        n = alert()
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        data = emitter.of_type("discord.failed")[0].data
        assert data["attempts"] == 1 and data["status_code"] == 404 and data["reason"] == "rejected"
        assert data["discord_code"] == 10015 and data["discord_message"] == "Unknown Webhook"
        assert len(server.requests) == 1
        assert notifier.stats.failed == 1

    async def test_a_rate_limit_longer_than_the_cap_fails_instead_of_stalling(self, server: WebhookServer) -> None:
        """A 429 asking for more than max_wait_sec fails the notification rather than block the queue for it."""
        server.script = [Reply(429, {"Retry-After": "3600"}, {"retry_after": 3600.0})]
        emitter = CapturingEmitter()
        n = alert()
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id, timeout_sec=3)
        data = emitter.of_type("discord.failed")[0].data
        assert data["reason"] == "rate_limited" and data["attempts"] == 1
        assert len(server.requests) == 1

    async def test_connection_refused_is_retried_then_fails(self) -> None:
        """A closed port gives connection_error on every attempt, then one discord.failed."""
        emitter = CapturingEmitter()
        n = alert()
        url = f"http://127.0.0.1:{closed_port()}/api/webhooks/1/{TOKEN}"
        async with running(make(emitter, alerts=url)) as notifier:
            notifier.submit(n)
            await settled(emitter, n.id)
        data = emitter.of_type("discord.failed")[0].data
        assert (data["attempts"], data["reason"], data["status_code"]) == (3, "connection_error", None)
        assert data["error"] == "ClientConnectorError: Connection refused"

    async def test_progress_beats_during_a_slow_request(self, server: WebhookServer) -> None:
        """on_progress is called at least once a second while a request is outstanding."""
        server.script = [Reply(204, delay_sec=1.5)]
        emitter, beats = CapturingEmitter(), []
        n = alert()
        notifier = make(emitter, alerts=server.url(), on_progress=lambda: beats.append(1))
        async with running(notifier):
            await asyncio.sleep(0.05)
            before = len(beats)
            notifier.submit(n)
            await settled(emitter, n.id)
        assert len(beats) - before >= 2  # the wake for the submit, then a beat during the 1.5 s answer
        assert emitter.of_type("discord.delivered")


# -- the queue, mute and cooldown ---------------------------------------------------------------


class TestQueue:
    async def test_a_newer_heartbeat_replaces_an_unsent_one(self, server: WebhookServer) -> None:
        """Three heartbeats in a queue of 2 leave one (the newest) queued; alerts are never replaced."""
        emitter = CapturingEmitter()
        notifier = make(emitter, alerts=server.url(), queue_size=2)
        hbs = [heartbeat(f"hb{i}") for i in range(3)]
        a = alert()
        assert all(notifier.submit(h) for h in hbs)
        assert notifier.submit(a)
        assert notifier.queued == 2 and notifier.stats.replaced == 2 and notifier.stats.coalesced == 0
        async with running(notifier):
            await settled(emitter, hbs[2].id, a.id)
        assert [r.body["embeds"][0]["title"] for r in server.requests] == ["hb2", "peer silent"]
        assert not any(e.correlation_id in (hbs[0].id, hbs[1].id) for e in emitter.events)

    def test_a_full_queue_drops_and_says_queue_full(self) -> None:
        """With the queue full of alerts, a new one is refused: counted, and one discord.failed warning queue_full."""
        emitter = CapturingEmitter()
        notifier = make(emitter, alerts="http://127.0.0.1:9/api/webhooks/1/x", queue_size=2, clock=FakeClock())
        first = [alert(subject="p0"), alert(subject="p1", kind="worker.exited")]  # two kinds: no merge
        assert all(notifier.submit(n) for n in first)
        late = alert(subject="p9", kind="wfv.timeout")
        assert not notifier.submit(late)
        assert not notifier.submit(heartbeat())  # a heartbeat does not push an alert out either
        assert notifier.stats.dropped == 2 and notifier.queued == 2
        (failed,) = emitter.of_type("discord.failed")  # the second drop is in the same episode: no event yet
        assert failed.correlation_id == late.id and failed.severity == "warning"
        assert (failed.data["reason"], failed.data["attempts"], failed.data["count"]) == ("queue_full", 0, 1)
        assert failed.data["kind"] == "wfv.timeout" and failed.data["subject"] == "p9"

    def test_a_muted_kind_is_not_queued(self) -> None:
        """A kind in discord.mute is refused without an event; other kinds pass."""
        emitter = CapturingEmitter()
        notifier = make(emitter, alerts="http://127.0.0.1:9/x", mute=("peer.silent",), clock=FakeClock())
        assert not notifier.submit(alert())
        assert notifier.submit(alert(kind="worker.exited"))
        assert notifier.stats.muted == 1 and notifier.queued == 1
        assert emitter.events == []

    def test_repeats_of_one_kind_and_subject_are_held_back_for_the_cooldown(self) -> None:
        """Within alert_cooldown_sec a repeat (same kind and subject) is suppressed silently; after it, it passes."""
        emitter, clock = CapturingEmitter(), FakeClock()
        notifier = make(emitter, alerts="http://127.0.0.1:9/x", clock=clock, alert_cooldown_sec=300)
        assert notifier.submit(alert(subject="peer-1"))
        clock.advance(299)
        assert not notifier.submit(alert(subject="peer-1"))
        assert notifier.submit(alert(subject="peer-2"))
        assert notifier.submit(alert(subject="peer-1", kind="peer.recovered"))
        clock.advance(1)
        assert notifier.submit(alert(subject="peer-1"))
        assert notifier.stats.suppressed == 1
        assert emitter.events == []

    def test_heartbeats_have_no_cooldown(self) -> None:
        """Heartbeats are never suppressed by the cooldown (an unsent one is replaced instead)."""
        notifier = make(CapturingEmitter(), alerts="http://127.0.0.1:9/x", clock=FakeClock(), alert_cooldown_sec=300)
        assert notifier.submit(heartbeat()) and notifier.submit(heartbeat())
        assert notifier.stats.suppressed == 0 and notifier.stats.replaced == 1

    def test_update_config_applies_mute_cooldown_and_queue_size(self) -> None:
        """SIGHUP's new [discord] values take effect for the next submit."""
        clock = FakeClock()
        notifier = make(CapturingEmitter(), alerts="http://127.0.0.1:9/x", clock=clock, alert_cooldown_sec=300)
        assert notifier.submit(alert(subject="a"))
        notifier.update_config(DiscordConfig(alert_cooldown_sec=0, mute=("worker.exited",), queue_size=2))
        assert notifier.submit(alert(subject="a"))  # no cooldown now: merged into the waiting one
        assert not notifier.submit(alert(kind="worker.exited"))
        assert notifier.submit(alert(kind="peer.recovered"))
        assert not notifier.submit(alert(kind="wfv.timeout"))  # queue_size 2 is reached
        assert notifier.stats.muted == 1 and notifier.stats.dropped == 1 and notifier.stats.coalesced == 1


# -- bursts: one kind merges into one message ---------------------------------------------------


def peer_silent(name: str) -> Notification:
    """A peer.silent alert as swimmy.notify.alerts builds it."""
    return Notification("peer.silent", f"Peer silent: {name}", "No heartbeat for 60 s.", "warning", name)


class TestBurstSummary:
    @pytest.mark.parametrize(
        ("first", "count", "subjects", "named", "head", "title", "description"),
        [
            (peer_silent("w-a"), 3, ["w-a", "w-b"], 2, None, f"3 {MUL} Peer silent: w-a, w-b, … (and 1 more)",
             "3 peer.silent alerts arrived while the first waited to be sent: w-a, w-b, … (and 1 more)."
             "\n\nThe first: No heartbeat for 60 s."),
            (peer_silent("w-a"), 3, ["w-a"], 3, None, f"3 {MUL} Peer silent: w-a",  # one peer, repeated: no "more"
             "3 peer.silent alerts arrived while the first waited to be sent: w-a."
             "\n\nThe first: No heartbeat for 60 s."),
            (Notification("daemon.started", "swimmy started", "version 1"), 2, [], 0, None, f"2 {MUL} swimmy started",
             "2 daemon.started alerts arrived while the first waited to be sent.\n\nThe first: version 1"),
            (Notification("strategy.promoted", "Promoted to A: x", "", subject="x"), 2, ["x", "y"], 2,
             "strategy.promoted", f"2 {MUL} strategy.promoted: x, y",
             "2 strategy.promoted alerts arrived while the first waited to be sent: x, y."),
        ],
    )
    def test_a_merged_burst_reads_as_a_summary(self, first: Notification, count: int, subjects: list[str],
                                               named: int, head: str | None, title: str, description: str) -> None:
        """The title and description start with the count and list the kept subjects; kind, subject, id stay."""
        n = summary_notification(first, count, subjects, named, head)
        assert (n.title, n.description) == (title, description)
        assert (n.kind, n.subject, n.severity, n.id) == (first.kind, first.subject, first.severity, first.id)

    def test_a_single_alert_is_unchanged(self) -> None:
        """A count of one is the alert itself, so a lone alert reads exactly as before."""
        n = peer_silent("w-a")
        assert summary_notification(n, 1, ["w-a"], 1) is n

    @pytest.mark.parametrize(
        ("n", "head"),
        [
            (peer_silent("w-a"), "Peer silent"),
            (Notification("telemetry.failing", "Telemetry writes failing", "", subject="/var/t"),
             "Telemetry writes failing"),
            (Notification("daemon.started", "", ""), "daemon.started"),
        ],
    )
    def test_title_head_drops_the_subject(self, n: Notification, head: str) -> None:
        """The shared part of a title is the title without a trailing subject, or the kind when nothing is left."""
        assert title_head(n) == head


class TestBursts:
    async def test_500_silent_peers_are_one_message(self, server: WebhookServer) -> None:
        """500 peer.silent alerts queued at once reach the webhook as one message naming the count and 10 peers."""
        emitter = CapturingEmitter()
        ns = [peer_silent(f"worker-{i}") for i in range(500)]
        notifier = make(emitter, alerts=server.url())
        assert all(notifier.submit(n) for n in ns)
        assert notifier.queued == 1 and notifier.stats.coalesced == 499
        async with running(notifier):
            await settled(emitter, ns[0].id)
            await until(lambda: notifier.queued == 0)
        assert len(server.requests) == 1
        embed = server.requests[0].body["embeds"][0]
        names = ", ".join(f"worker-{i}" for i in range(10))
        assert embed["title"] == f"500 {MUL} Peer silent: {names}, … (and 490 more)"
        assert embed["description"] == (f"500 peer.silent alerts arrived while the first waited to be sent: {names}, … "
                                        "(and 490 more).\n\nThe first: No heartbeat for 60 s.")
        assert "worker-10" not in embed["title"] + embed["description"]
        assert embed["footer"]["text"] == "swimmy · peer.silent · worker-0"
        assert [(e.event_type, e.correlation_id) for e in emitter.events] == [("discord.delivered", ns[0].id)]
        assert notifier.stats.delivered == 1 and notifier.stats.dropped == 0

    def test_a_burst_keeps_ten_subjects_in_memory(self) -> None:
        """However long the burst, the waiting entry holds the first 10 distinct subjects, no more."""
        notifier = make(CapturingEmitter(), clock=FakeClock())
        for i in range(3000):
            notifier.submit(peer_silent(f"worker-{i}"))
        (entry,) = notifier._queue  # private on purpose: the bound is on memory, not only on the text
        assert entry.subjects == [f"worker-{i}" for i in range(10)] and entry.count == 3000

    async def test_two_kinds_are_two_messages(self, server: WebhookServer) -> None:
        """Alerts merge only with their own kind: interleaved silent and back alerts give one message per kind."""
        emitter = CapturingEmitter()
        silent = [peer_silent(f"p{i}") for i in range(2)]
        back = [alert(kind="peer.recovered", title=f"Peer back: p{i}", subject=f"p{i}") for i in range(2)]
        notifier = make(emitter, alerts=server.url())
        for s, b in zip(silent, back, strict=True):
            assert notifier.submit(s) and notifier.submit(b)
        assert notifier.queued == 2 and notifier.stats.coalesced == 2
        async with running(notifier):
            await settled(emitter, silent[0].id, back[0].id)
        assert [r.body["embeds"][0]["title"] for r in server.requests] == [f"2 {MUL} Peer silent: p0, p1",
                                                                          f"2 {MUL} Peer back: p0, p1"]

    async def test_an_alert_after_delivery_is_a_new_message(self, server: WebhookServer) -> None:
        """Once the first alert is delivered, the next one of its kind is its own message, read as a single alert."""
        emitter = CapturingEmitter()
        first, second = peer_silent("p0"), peer_silent("p1")
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(first)
            await settled(emitter, first.id)
            notifier.submit(second)
            await settled(emitter, second.id)
        assert [r.body["embeds"][0]["title"] for r in server.requests] == ["Peer silent: p0", "Peer silent: p1"]
        assert notifier.stats.coalesced == 0 and notifier.stats.delivered == 2

    async def test_an_alert_in_flight_takes_no_more(self, server: WebhookServer) -> None:
        """Alerts arriving while one of their kind is being delivered merge with each other, not into it."""
        server.script = [Reply(204, delay_sec=0.3)]
        emitter = CapturingEmitter()
        ns = [peer_silent(f"p{i}") for i in range(3)]
        async with running(make(emitter, alerts=server.url())) as notifier:
            notifier.submit(ns[0])
            await until(lambda: len(server.requests) == 1)
            assert notifier.submit(ns[1]) and notifier.submit(ns[2])
            await settled(emitter, ns[0].id, ns[1].id)
        titles = [r.body["embeds"][0]["title"] for r in server.requests]
        assert titles == ["Peer silent: p0", f"2 {MUL} Peer silent: p1, p2"]
        assert notifier.stats.coalesced == 1

    async def test_a_repeat_within_the_cooldown_is_suppressed_not_merged(self) -> None:
        """The cooldown comes first: a repeat of one (kind, subject) is suppressed and does not add to the count."""
        emitter = CapturingEmitter()
        notifier = make(emitter, clock=FakeClock(), alert_cooldown_sec=300)
        first = peer_silent("p0")
        assert notifier.submit(first)
        assert not notifier.submit(peer_silent("p0"))
        assert notifier.stats.suppressed == 1 and notifier.stats.coalesced == 0
        async with running(notifier):
            await settled(emitter, first.id)
        assert emitter.of_type("discord.dry_run")[-1].data["title"] == "Peer silent: p0"

    async def test_a_dry_run_shows_the_summary(self) -> None:
        """Without a webhook, a merged burst is one discord.dry_run carrying the summary title and description."""
        emitter = CapturingEmitter()
        ns = [peer_silent(f"p{i}") for i in range(3)]
        async with running(make(emitter, clock=FakeClock())) as notifier:
            for n in ns:
                notifier.submit(n)
            await settled(emitter, ns[0].id)
        (dry,) = [e for e in emitter.of_type("discord.dry_run") if e.data["kind"] != "announce"]
        assert dry.correlation_id == ns[0].id and dry.data["title"] == f"3 {MUL} Peer silent: p0, p1, p2"
        assert dry.data["description"].startswith("3 peer.silent alerts")


class TestQueueFull:
    async def test_drops_are_one_warning_then_one_a_minute_then_the_rest(self) -> None:
        """A queue_full episode: one warning at the first drop, one per 60 s, the rest when the queue takes again."""
        emitter, clock = CapturingEmitter(), FakeClock()
        notifier = make(emitter, clock=clock, queue_size=2)  # dry: draining needs no webhook
        kinds = iter(f"kind-{i}" for i in range(1000))  # distinct kinds, so merging cannot make room

        def other() -> Notification:
            return alert(kind=next(kinds), subject="s")

        def queue_full() -> list[Any]:
            return [e for e in emitter.of_type("discord.failed") if e.data["reason"] == "queue_full"]

        queued = [other(), other()]
        assert all(notifier.submit(n) for n in queued)
        first_drop = other()
        assert not notifier.submit(first_drop)
        (event,) = queue_full()
        assert (event.severity, event.correlation_id) == ("warning", first_drop.id)
        assert (event.data["count"], event.data["attempts"], event.data["status_code"]) == (1, 0, None)

        window = [other() for _ in range(38)]
        for n in window:  # 38 drops over 38 s: within 60 s of the first event, none is reported yet
            clock.advance(1)
            assert not notifier.submit(n)
        assert notifier.submit(alert(kind=queued[0].kind, subject="t"))  # a merge is no drop and ends nothing
        assert len(queue_full()) == 1

        clock.advance(30)
        assert not notifier.submit(minute := other())  # 68 s after the first event: one more, for all 39
        assert len(queue_full()) == 2
        assert (queue_full()[1].data["count"], queue_full()[1].correlation_id) == (39, window[0].id)
        assert queue_full()[1].severity == "warning"
        assert minute.id not in {e.correlation_id for e in emitter.events}

        tail = [other() for _ in range(3)]
        for n in tail:
            assert not notifier.submit(n)
        assert len(queue_full()) == 2

        async with running(notifier):
            await until(lambda: notifier.queued == 0)
            assert notifier.submit(other())  # the queue takes again: the episode ends with its last count
        assert len(queue_full()) == 3
        assert (queue_full()[2].data["count"], queue_full()[2].correlation_id) == (3, tail[0].id)
        assert sum(e.data["count"] for e in queue_full()) == notifier.stats.dropped == 43
        assert notifier.stats.failed == 0

        assert notifier.submit(other())
        assert not notifier.submit(again := other())  # a new episode is reported at once
        assert (len(queue_full()), queue_full()[3].correlation_id, queue_full()[3].data["count"]) == (4, again.id, 1)

    async def test_an_episode_without_later_drops_ends_silently(self) -> None:
        """One drop, then the queue takes again: the single event already accounted for it, nothing more."""
        emitter = CapturingEmitter()
        notifier = make(emitter, clock=FakeClock(), queue_size=1)
        assert notifier.submit(alert(kind="peer.silent"))
        assert not notifier.submit(alert(kind="worker.exited"))
        async with running(notifier):
            await until(lambda: notifier.queued == 0)
            assert notifier.submit(alert(kind="wfv.timeout"))
        assert [e.data["count"] for e in emitter.of_type("discord.failed")] == [1]


class TestRouting:
    async def test_dry_run_without_urls(self) -> None:
        """No URL: one start-up dry_run naming the env vars, then one dry_run per notification, no HTTP."""
        emitter = CapturingEmitter()
        notifier = make(emitter)
        assert notifier.dry
        a, hb = alert(description="x" * 10_000), heartbeat()
        async with running(notifier):
            notifier.submit(a)
            notifier.submit(hb)
            await settled(emitter, a.id, hb.id)
            await asyncio.sleep(0.05)
        dry = emitter.of_type("discord.dry_run")
        assert dry[0].data == {"kind": "announce", "reason": "no webhook URL configured",
                               "env": ["SWIMMY_DISCORD_HEARTBEAT", "SWIMMY_DISCORD_ALERTS"]}
        assert dry[0].correlation_id not in (None, "unknown")
        assert [e.correlation_id for e in dry[1:]] == [a.id, hb.id]
        assert dry[1].data["title"] == "peer silent" and len(dry[1].data["description"]) == DESCRIPTION_MAX
        assert dry[1].data["kind"] == "peer.silent"
        assert notifier.stats.dry_run == 2 and notifier.stats.delivered == 0
        assert len(emitter.events) == 3

    async def test_only_alerts_url_carries_heartbeats_too(self, server: WebhookServer) -> None:
        """With only the alerts webhook set, heartbeats go there as well."""
        emitter = CapturingEmitter()
        hb = heartbeat()
        notifier = make(emitter, alerts=server.url("77"))
        assert not notifier.dry
        async with running(notifier):
            notifier.submit(hb)
            await settled(emitter, hb.id)
        assert [r.path for r in server.requests] == [f"/api/webhooks/77/{TOKEN}"]
        assert emitter.of_type("discord.delivered")

    async def test_heartbeats_and_alerts_go_to_their_own_webhooks(self, server: WebhookServer) -> None:
        """Heartbeats go to their webhook and alerts to theirs; with only the heartbeat webhook set, both go there."""
        emitter = CapturingEmitter()
        hb, al = heartbeat(), alert()
        async with running(make(emitter, heartbeat=server.url("1"), alerts=server.url("2"))) as notifier:
            notifier.submit(hb)
            notifier.submit(al)
            await settled(emitter, hb.id, al.id)
        al2 = alert(subject="other")
        async with running(make(emitter, heartbeat=server.url("1"))) as notifier:
            notifier.submit(al2)
            await settled(emitter, al2.id)
        assert [r.path.split("/")[3] for r in server.requests] == ["1", "2", "1"]


class TestSecrets:
    async def test_the_token_appears_in_no_event_log_or_console(
        self, server: WebhookServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Across 204, 404, 429, 500, timeout, refused and invalid URLs, SECRET-TOKEN is in no output."""
        caplog.set_level(logging.DEBUG)
        queue = EventQueue(10_000)
        stream = io.StringIO()
        configure_logging(queue, "debug", stream)
        try:
            server.script = [
                Reply(404, body={"message": f"Unknown Webhook {TOKEN}", "code": 10015}),
                Reply(429, {"Retry-After": "0"}, {"retry_after": 0.05}),
                Reply(500),
                Reply(204, delay_sec=2.0),
                Reply(204),
            ]
            refused = f"http://127.0.0.1:{closed_port()}/api/webhooks/1/{TOKEN}"
            urls: dict[str, str]
            for urls in [
                {"alerts": server.url()},
                {"alerts": server.url(), "heartbeat": server.url("9")},
                {"alerts": refused},
                {"alerts": f"notaurl://host/api/webhooks/1/{TOKEN}"},
                {"alerts": f"http://[bad/api/webhooks/1/{TOKEN}"},
            ]:
                notifier = make(queue.emit, timeout_sec=0.3, alerts=urls["alerts"], heartbeat=urls.get("heartbeat"))
                ns = [alert(subject=f"s{i}", kind=kind)  # three kinds, so three messages (one kind would merge)
                      for i, kind in enumerate(("peer.silent", "peer.recovered", "worker.exited"))]
                async with running(notifier):
                    for n in ns:
                        notifier.submit(n)
                    await _wait_for_queue(queue, notifier, len(ns))
                assert TOKEN not in repr(notifier) and TOKEN not in repr(notifier.stats)
            records = queue.take(100_000)
        finally:
            reset_logging()
        lines = b"".join(Encoder(run_id="r", pid=1, host="h", max_event_bytes=1 << 20).encode_batch(records))
        assert b"discord.failed" in lines and b"discord.delivered" in lines and b"discord.rate_limited" in lines
        assert TOKEN.encode() not in lines
        assert b"SECRET-TOKEN" not in orjson.dumps([list(r) for r in records], default=str)
        out = capsys.readouterr()
        assert "SECRET-TOKEN" not in out.out + out.err + stream.getvalue() + caplog.text


async def _wait_for_queue(queue: EventQueue, notifier: DiscordNotifier, count: int) -> None:
    """Until `count` notifications reached a final state (delivered, failed or dry run)."""
    def done() -> bool:
        stats = notifier.stats
        return stats.delivered + stats.failed + stats.dry_run >= count

    await until(done, timeout_sec=20)


def test_stats_is_a_plain_snapshot() -> None:
    """stats is a frozen dataclass of counters with the queue length."""
    notifier = make(CapturingEmitter(), clock=FakeClock())
    notifier.submit(alert())
    assert dataclasses.asdict(notifier.stats)["queued"] == 1
