"""Outbound alert messages: webhooks to a real HTTP receiver on loopback, e-mail to Django's in-memory outbox.

The receiver (http.server in a thread) checks every signature the way docs/alerts.md tells a receiving end
to: HMAC-SHA256 of "<t>." + body with the shared secret, and a timestamp within five minutes. Alerts come
from AlertService fed with readings (as the links write them) or from a simulator drained by a driven
holder; messages are sent by calling the Huey task function or the service at a chosen time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from micboard.models import Alert, AlertSubscription, Assignment, Delivery, Webhook
from micboard.services import AssignmentService, DeviceService, GroupService, PollOutcome
from micboard.services.alerts import AlertService
from micboard.services.notify import NotifyService, in_quiet_hours
from tasks.notify import send_delivery, sweep_deliveries
from tests.factories import (
    Driven,
    make_receiver,
    make_user,
    pack_on,
    reading,
    receivers_for,
    start_simulator,
    use_fast_polls,
    wait_for,
)

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
SECRET = "crew-shared-secret-0123456789"


# --- a webhook receiver on loopback --------------------------------------------------------------------------


class HookServer:
    """Answers each POST with the next scripted reply (status, headers, seconds to wait) and keeps what came."""

    def __init__(self, secret: str = SECRET):
        self.secret = secret
        self.replies: list[tuple[int, dict, float]] = []
        self.received: list[dict] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append(
                    {"headers": dict(self.headers), "body": body, "valid": server.verify(self.headers, body)}
                )
                status, headers, wait = server.replies.pop(0) if server.replies else (200, {}, 0.0)
                if wait:
                    server.stop.wait(wait)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    text = b"x" * 5000 if status == 400 else b"ok"  # a long error body: only a bit is read
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/micboard"

    def verify(self, headers, body: bytes) -> bool:
        """What a receiving end does (docs/alerts.md): recompute the HMAC, compare in constant time, check t."""
        parts = dict(p.split("=", 1) for p in headers.get("X-Micboard-Signature", "").split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts:
            return False
        expected = hmac.new(self.secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received]

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook_server():
    server = HookServer()
    yield server
    server.close()


@pytest.fixture
def queue():
    """This run's Huey queue, emptied: what the tests look at is what they queued."""
    HUEY.flush()
    yield HUEY
    HUEY.flush()


def webhook(url: str, **fields) -> Webhook:
    return Webhook.objects.create(name=fields.pop("name", "FOH chat"), url=url, secret=SECRET, **fields)


def record(receiver, *channels, now=NOW):
    DeviceService.record_poll_results(outcomes=[PollOutcome(receiver.pk, reading=reading(*channels))], now=now)


@pytest.fixture
def rack(db):
    receiver = make_receiver()
    ch = {c.number: c for c in receiver.channels.all()}
    AssignmentService.assign(channel=ch[1], performer="Lead Vocal", priority=Assignment.Priority.HIGH)
    AssignmentService.assign(channel=ch[2], performer="Keys", priority=Assignment.Priority.CRITICAL)
    AssignmentService.assign(channel=ch[3], performer="Choir", priority=Assignment.Priority.LOW)
    return receiver, ch


def open_battery_alerts(receiver, *numbers, now=NOW):
    """Drain the packs on these channels (the others full) and evaluate: one battery alert per channel."""
    packs = [pack_on(n, bars=1, minutes=20) if n in numbers else pack_on(n) for n in (1, 2, 3, 4)]
    record(receiver, *packs, now=now)
    AlertService.evaluate(now=now)
    return {a.channel.number: a for a in Alert.objects.filter(kind="battery", state="open").select_related("channel")}


def attempt(delivery, *, at, capture):
    """One attempt at ``at``, running what the attempt queues after its commit (the retry's task)."""
    with capture(execute=True):
        return NotifyService.send(delivery_id=delivery.pk, now=at)


# --- (a) through the simulator ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_drained_pack_reaches_the_webhook_with_a_valid_signature(settings, hook_server, queue):
    use_fast_polls(settings)
    settings.MICBOARD_LINK_LEASE = 3.0
    settings.MICBOARD_PUBLIC_URL = "http://127.0.0.1:8000/"
    sim = start_simulator(["ulxd"])
    receiver = receivers_for(sim, ["ulxd"])["ulxd"]
    channel = receiver.channels.get(number=1)
    AssignmentService.assign(channel=channel, performer="Lead Vocal", priority=Assignment.Priority.HIGH)
    hook = webhook(hook_server.url)
    driven = Driven()
    try:
        wait_for(lambda: receiver.__class__.objects.filter(pk=receiver.pk, online=True).exists(), 5, "see it online")
        sim.set_battery("ulxd", 1, 5)  # one bar left
        delivery = wait_for(lambda: Delivery.objects.filter(webhook=hook, event="opened").first(), 5, "queue it")
        # The link's evaluation only wrote the outbox row and queued its task: nothing went out from there.
        assert delivery.state == "queued" and delivery.attempts == 0
        wait_for(lambda: [t.args for t in queue.pending()] == [(delivery.pk,)], 2, "queue the task after the commit")
        assert hook_server.received == []
    finally:
        driven.stop()
        sim.stop()

    assert send_delivery.call_local(delivery.pk) == "sent"
    [request] = hook_server.received
    assert request["valid"], "the signature checks out with the shared secret"
    assert request["headers"]["X-Micboard-Event"] == "opened"
    assert request["headers"]["X-Micboard-Delivery"] == str(delivery.pk)
    body = json.loads(request["body"])
    alert = body["alert"]
    assert (body["event"], body["delivery"]) == ("opened", delivery.pk)
    assert (alert["kind"], alert["state"], alert["priority"], alert["performer"]) == (
        "battery", "open", "high", "Lead Vocal",
    )  # fmt: skip
    assert alert["channel"]["number"] == 1 and alert["receiver"]["name"] == receiver.name
    assert alert["detail"].startswith("Battery low: 1 bar")
    assert alert["opened_at"] and alert["acknowledged_at"] is None
    assert body["board_url"] == f"http://127.0.0.1:8000/channels/{channel.pk}/"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("sent", 1, 200)


class QueueRunner:
    """What a Huey consumer's scheduler and worker do, in one thread: move due scheduled tasks to the queue,
    run queued tasks (a whole consumer would also start link shifts, which this test has no use for)."""

    def __init__(self, queue):
        self.queue = queue
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from django.db import connection

        try:
            while not self.halt.is_set():
                for task in self.queue.read_schedule():
                    self.queue.enqueue(task)
                task = self.queue.dequeue()
                if task is None:
                    self.halt.wait(0.05)
                else:
                    self.queue.execute(task)
        finally:
            connection.close()

    def stop(self):
        self.halt.set()
        self.thread.join(10)


@pytest.mark.django_db(transaction=True)
def test_the_queue_sends_the_message_after_the_commit_and_retries_a_failing_receiver(settings, hook_server, queue):
    settings.MICBOARD_ALERT_RETRY_SECONDS = 0.2
    receiver = make_receiver()
    AssignmentService.assign(channel=receiver.channels.get(number=1), performer="Lead Vocal")
    hook = webhook(hook_server.url)
    hook_server.replies = [(500, {}, 0)]
    queue.flush()  # the link shift a new receiver queues: no link in this test
    runner = QueueRunner(queue)
    try:
        now = timezone.now()
        record(receiver, pack_on(1, bars=1), now=now)
        assert AlertService.evaluate(now=now).opened == 1
        delivery = Delivery.objects.get(webhook=hook)
        wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, state="sent").exists(), 10, "deliver it")
    finally:
        runner.stop()
    delivery.refresh_from_db()
    assert [e["outcome"] for e in delivery.log] == ["retry", "sent"]
    assert [r["valid"] for r in hook_server.received] == [True, True]


# --- (g) nothing is sent in the evaluation or a request -------------------------------------------------------


def test_evaluate_and_acknowledge_only_write_queued_rows_and_queue_tasks_after_the_commit(
    rack, hook_server, queue, django_capture_on_commit_callbacks
):
    receiver, _ = rack
    hook = webhook(hook_server.url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        alerts = open_battery_alerts(receiver, 1)
        assert Delivery.objects.get().state == "queued"
        assert queue.pending_count() == 0  # before the commit: nothing queued
    for callback in callbacks:
        callback()
    opened = Delivery.objects.get()
    assert [t.args for t in queue.pending()] == [(opened.pk,)]

    user = make_user("sam", role="operator")
    with django_capture_on_commit_callbacks(execute=True):
        AlertService.acknowledge(alert=alerts[1], user=user, screen="FOH tablet")
    acked = Delivery.objects.get(event="acknowledged")
    assert (acked.state, acked.attempts, acked.webhook) == ("queued", 0, hook)
    assert acked.payload["alert"]["acknowledged_by"] == "sam"
    assert acked.payload["alert"]["acknowledged_from"] == "FOH tablet"
    assert hook_server.received == []  # no HTTP from the evaluation or the acknowledgement
    assert opened.payload["alert"]["state"] == "open"  # each message tells the alert as it was then


def test_a_transition_that_rolls_back_leaves_no_message(rack, hook_server):
    from django.db import transaction

    receiver, _ = rack
    webhook(hook_server.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        open_battery_alerts(receiver, 1)
        assert Delivery.objects.count() == 1
        raise RuntimeError("the evaluation failed after opening")
    assert not Delivery.objects.exists()


# --- (b) retried with back-off --------------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_back_off_and_delivered_on_the_third_attempt(
    rack, settings, hook_server, queue, django_capture_on_commit_callbacks
):
    settings.MICBOARD_ALERT_RETRY_SECONDS = 10
    receiver, _ = rack
    webhook(hook_server.url)
    open_battery_alerts(receiver, 1)
    delivery = Delivery.objects.get()
    hook_server.replies = [(500, {}, 0), (503, {}, 0), (200, {}, 0)]

    attempt(delivery, at=NOW, capture=django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("queued", 1, 500)
    first_delay = (delivery.next_attempt_at - NOW).total_seconds()
    first_delay_at = delivery.next_attempt_at
    assert 5 <= first_delay <= 10  # 10 s with jitter: half fixed, half random
    # The retry's task is queued for its time (its eta, long past here, moves it straight to the queue).
    queued = [(t.args, t.eta) for t in queue.pending() + queue.scheduled()]
    assert queued == [((delivery.pk,), first_delay_at.replace(tzinfo=None))]  # Huey keeps naive UTC
    assert NotifyService.send(delivery_id=delivery.pk, now=NOW + timedelta(seconds=2)) is None  # not due yet

    second_at = delivery.next_attempt_at
    attempt(delivery, at=second_at, capture=django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("queued", 2, 503)
    assert 10 <= (delivery.next_attempt_at - second_at).total_seconds() <= 20  # doubled

    attempt(delivery, at=delivery.next_attempt_at, capture=django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code, delivery.error) == ("sent", 3, 200, "")
    assert [entry["outcome"] for entry in delivery.log] == ["retry", "retry", "sent"]
    assert [entry["status"] for entry in delivery.log] == [500, 503, 200]
    assert delivery.log[0]["retry_in"] == round(first_delay, 1)
    assert len(hook_server.received) == 3 and all(r["valid"] for r in hook_server.received)
    assert len({r["body"] for r in hook_server.received}) == 1  # the same message each time


def test_429_is_retried_after_the_servers_retry_after_within_bounds(rack, settings, hook_server):
    settings.MICBOARD_ALERT_RETRY_MAX_SECONDS = 60
    receiver, _ = rack
    webhook(hook_server.url)
    open_battery_alerts(receiver, 1)
    delivery = Delivery.objects.get()
    hook_server.replies = [(429, {"Retry-After": "7"}, 0), (503, {"Retry-After": "86400"}, 0)]
    NotifyService.send(delivery_id=delivery.pk, now=NOW)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == NOW + timedelta(seconds=7)
    NotifyService.send(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == NOW + timedelta(seconds=7 + 60)  # a day asked for: capped


# --- (c) permanent failures -----------------------------------------------------------------------------------


def test_a_400_is_a_permanent_failure_and_is_not_retried(rack, hook_server):
    receiver, _ = rack
    webhook(hook_server.url)
    open_battery_alerts(receiver, 1)
    delivery = Delivery.objects.get()
    hook_server.replies = [(400, {}, 0)]
    NotifyService.send(delivery_id=delivery.pk, now=NOW)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.status_code) == ("failed", 1, 400)
    assert delivery.error.startswith("HTTP 400: xxx") and len(delivery.error) < 400  # the body read is bounded
    assert delivery.next_attempt_at is None and delivery.log[-1]["outcome"] == "failed"
    assert NotifyService.send(delivery_id=delivery.pk, now=NOW + timedelta(hours=1)) is None
    assert len(hook_server.received) == 1


def test_a_redirect_is_not_followed_to_another_host(rack, hook_server):
    receiver, _ = rack
    elsewhere = HookServer()
    try:
        webhook(hook_server.url)
        open_battery_alerts(receiver, 1)
        delivery = Delivery.objects.get()
        hook_server.replies = [(307, {"Location": elsewhere.url}, 0)]
        NotifyService.send(delivery_id=delivery.pk, now=NOW)
        delivery.refresh_from_db()
        assert (delivery.state, delivery.status_code) == ("failed", 307)
        assert "not followed" in delivery.error
        assert elsewhere.received == []
    finally:
        elsewhere.close()


# --- (d) timeouts and refused connections are retried ---------------------------------------------------------


def test_a_timeout_and_a_refused_connection_are_retried_until_the_attempts_run_out(rack, settings, hook_server):
    settings.MICBOARD_WEBHOOK_TIMEOUT = 0.5
    settings.MICBOARD_ALERT_SEND_ATTEMPTS = 3
    receiver, _ = rack
    hook = webhook(hook_server.url)
    open_battery_alerts(receiver, 1)
    delivery = Delivery.objects.get()
    hook_server.replies = [(200, {}, 3.0)]  # answers too late
    started = time.monotonic()
    NotifyService.send(delivery_id=delivery.pk, now=NOW)
    assert time.monotonic() - started < 2.5  # the timeout held
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.error) == ("queued", 1, "no answer within 0.5 s")

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    Webhook.objects.filter(pk=hook.pk).update(url=f"http://127.0.0.1:{closed}/")
    NotifyService.send(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("queued", 2)
    assert delivery.error.startswith("connection failed: ConnectError")
    NotifyService.send(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 3)  # MICBOARD_ALERT_SEND_ATTEMPTS
    assert [e["outcome"] for e in delivery.log] == ["retry", "retry", "failed"]


def test_the_sweep_queues_deliveries_whose_task_was_lost_and_a_claimed_one_is_sent_once(rack, hook_server, queue):
    receiver, _ = rack
    webhook(hook_server.url)
    open_battery_alerts(receiver, 1)  # inside the test's transaction: its task is never queued
    delivery = Delivery.objects.get()
    assert queue.pending_count() == 0
    assert NotifyService.lost(now=NOW) == []  # just due: its task may still come
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=NOW - timedelta(minutes=5))
    assert NotifyService.lost(now=NOW) == [delivery.pk]
    sweep_deliveries.call_local()
    assert [t.args for t in queue.pending()] == [(delivery.pk,)]
    assert send_delivery.call_local(delivery.pk) == "sent"
    assert send_delivery.call_local(delivery.pk) is None  # a second task for it sends nothing
    assert len(hook_server.received) == 1


# --- (e) rate limit -------------------------------------------------------------------------------------------


def test_messages_beyond_the_rate_limit_go_out_as_one_summary(
    rack, settings, hook_server, django_capture_on_commit_callbacks
):
    settings.MICBOARD_ALERT_RATE_PER_MINUTE = 2
    receiver, _ = rack
    webhook(hook_server.url)
    AssignmentService.assign(channel=receiver.channels.get(number=4), performer="Spare")
    open_battery_alerts(receiver, 1, 2, 3, 4)
    deliveries = list(Delivery.objects.order_by("pk"))
    assert len(deliveries) == 4
    for i, delivery in enumerate(deliveries):
        attempt(delivery, at=NOW + timedelta(seconds=i), capture=django_capture_on_commit_callbacks)
    states = [(d.state, d.reason) for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).order_by("pk")]
    assert states == [("sent", ""), ("sent", ""), ("suppressed", "rate_limit"), ("suppressed", "rate_limit")]
    assert len(hook_server.received) == 2

    summary = Delivery.objects.get(event="summary")
    assert summary.next_attempt_at == NOW + timedelta(seconds=60)  # when the first of the minute leaves the window
    assert NotifyService.send(delivery_id=summary.pk, now=NOW + timedelta(seconds=30)) is None
    attempt(summary, at=NOW + timedelta(seconds=60), capture=django_capture_on_commit_callbacks)
    summary.refresh_from_db()
    assert summary.state == "sent"
    body = hook_server.payloads()[-1]
    assert hook_server.received[-1]["valid"]
    assert (body["event"], body["count"], body["more"]) == ("summary", 2, 0)
    assert sorted(m["alert"]["performer"] for m in body["messages"]) == ["Choir", "Spare"]
    assert set(summary.summarised.values_list("pk", flat=True)) == {deliveries[2].pk, deliveries[3].pk}


# --- (f) e-mail: priorities, groups, quiet hours ----------------------------------------------------------------


def subscribe(username, **fields):
    user = User.objects.create_user(username, email=f"{username}@example.org")
    groups = fields.pop("groups", [])
    subscription = AlertSubscription.objects.create(user=user, **fields)
    subscription.groups.set(groups)
    return subscription


def send_all(now=NOW):
    for delivery in Delivery.objects.filter(state="queued", user__isnull=False):
        NotifyService.send(delivery_id=delivery.pk, now=now)


def test_email_goes_to_subscribers_by_priority_and_board_group(rack):
    receiver, ch = rack
    band = GroupService.set_tiles(name="Band", channels=[ch[3]])
    subscribe("high", priorities=[Assignment.Priority.HIGH, Assignment.Priority.CRITICAL])
    subscribe("band", groups=[band])
    subscribe("everything")
    subscribe("off", active=False)
    User.objects.create_user("nobody", email="nobody@example.org")  # no subscription
    open_battery_alerts(receiver, 1, 3)  # ch1: Lead Vocal, high; ch3: Choir, low, on the Band board
    send_all()
    got = sorted((m.to[0].split("@")[0], m.subject) for m in mail.outbox)
    assert got == [
        ("band", "[micboard] LOW: Battery low on Rack A ch3 (Choir)"),
        ("everything", "[micboard] HIGH: Battery low on Rack A ch1 (Lead Vocal)"),
        ("everything", "[micboard] LOW: Battery low on Rack A ch3 (Choir)"),
        ("high", "[micboard] HIGH: Battery low on Rack A ch1 (Lead Vocal)"),
    ]
    text = next(m.body for m in mail.outbox if "Lead Vocal" in m.subject)
    assert "Detail: Battery low: 1 bar, 0:20 left; swap the pack" in text and "Priority: high" in text
    assert not Delivery.objects.filter(event="acknowledged").exists()  # e-mail: opened only by default


def test_quiet_hours_spanning_midnight_hold_back_all_but_critical_email(rack, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    receiver, _ = rack
    subscribe("night", quiet_start=clock(22, 0), quiet_end=clock(7, 0))
    late = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)  # 00:30 in Berlin: quiet
    open_battery_alerts(receiver, 1, 2, now=late)  # ch1 high, ch2 critical
    rows = {d.payload["alert"]["priority"]: d for d in Delivery.objects.all()}
    assert (rows["high"].state, rows["high"].reason) == ("suppressed", "quiet_hours")
    assert rows["critical"].state == "queued"
    send_all(late)
    assert [m.subject for m in mail.outbox] == ["[micboard] CRITICAL: Battery low on Rack A ch2 (Keys)"]


@pytest.mark.parametrize(
    ("start", "end", "local", "quiet"),
    [
        (clock(22), clock(7), clock(23, 59), True),
        (clock(22), clock(7), clock(0, 0), True),
        (clock(22), clock(7), clock(7, 0), False),  # the end is not quiet any more
        (clock(22), clock(7), clock(12, 0), False),
        (clock(13), clock(15), clock(14, 0), True),
        (clock(13), clock(15), clock(15, 30), False),
        (None, None, clock(3, 0), False),
    ],
)
def test_quiet_hours_are_read_in_the_servers_time_zone(settings, start, end, local, quiet):
    settings.TIME_ZONE = "America/New_York"
    at = datetime.combine(datetime(2026, 6, 1).date(), local).replace(tzinfo=UTC) + timedelta(hours=4)  # EDT
    assert in_quiet_hours(start=start, end=end, at=at) is quiet


def test_an_email_rate_limit_and_a_user_without_address(rack, settings):
    settings.MICBOARD_ALERT_RATE_PER_MINUTE = 1
    receiver, _ = rack
    subscription = subscribe("sam")
    open_battery_alerts(receiver, 1, 2)
    send_all()
    assert len(mail.outbox) == 1
    assert Delivery.objects.filter(state="suppressed", reason="rate_limit").count() == 1
    summary = Delivery.objects.get(event="summary")
    NotifyService.send(delivery_id=summary.pk, now=NOW + timedelta(seconds=61))
    assert mail.outbox[-1].subject == "[micboard] 1 alert messages held back by the rate limit"

    User.objects.filter(pk=subscription.user_id).update(email="")
    open_battery_alerts(receiver, 3, now=NOW + timedelta(minutes=5))
    delivery = Delivery.objects.get(alert__channel__number=3, alert__kind="battery")
    NotifyService.send(delivery_id=delivery.pk, now=NOW + timedelta(minutes=5))
    delivery.refresh_from_db()
    assert (delivery.state, delivery.error) == ("failed", "sam has no e-mail address")


def test_a_subject_never_carries_a_line_break_from_a_device_name(rack):
    receiver, _ = rack
    subscribe("sam")
    from micboard.models import Performer

    Performer.objects.filter(name="Lead Vocal").update(name="Lead\r\nBcc: x@example.org")
    open_battery_alerts(receiver, 1)
    send_all()
    [message] = mail.outbox
    assert "\n" not in message.subject and "\r" not in message.subject
    assert message.to == ["sam@example.org"] and message.bcc == []


# --- (h) admin ------------------------------------------------------------------------------------------------


def test_the_webhook_admin_is_for_admins_and_never_shows_the_secret(db, client, admin_client, hook_server):
    hook = webhook(hook_server.url)
    change = reverse("admin:micboard_webhook_change", args=[hook.pk])
    operator = make_user("op", role="operator", password="pw-operator-1")
    client.force_login(operator)
    assert client.get(reverse("admin:micboard_webhook_changelist")).status_code == 302  # not staff: to the login
    staff = make_user("staffer", role=None, is_staff=True)
    client.force_login(staff)
    assert client.get(change).status_code == 403  # staff without the permission
    assert client.get(reverse("admin:micboard_delivery_changelist")).status_code == 403

    page = admin_client.get(change).content.decode()
    assert SECRET not in page
    assert "…6789" in page  # its last four characters, to tell secrets apart
    form = {
        "name": "FOH chat", "url": hook_server.url, "secret": "", "active": "on", "events": ["opened", "resolved"],
        "priorities": ["3", "4"],
    }  # fmt: skip
    assert admin_client.post(change, form).status_code == 302
    hook.refresh_from_db()
    assert hook.secret == SECRET  # blank keeps it
    assert (hook.events, hook.priorities) == (["opened", "resolved"], [3, 4])
    short = admin_client.post(reverse("admin:micboard_webhook_add"), form | {"name": "New", "secret": "short"})
    assert "Use at least 16 characters." in short.content.decode()
    ftp = admin_client.post(reverse("admin:micboard_webhook_add"), form | {"name": "New", "url": "ftp://x/"})
    assert ftp.status_code == 200 and not Webhook.objects.filter(name="New").exists()


def test_send_test_queues_a_test_message_that_is_sent_signed(db, admin_client, hook_server, queue):
    hook = webhook(hook_server.url)
    url = reverse("admin:micboard_webhook_changelist")
    response = admin_client.post(url, {"action": "send_test", "_selected_action": [hook.pk]}, follow=True)
    assert "Test message queued for 1 webhook(s)" in response.content.decode()
    delivery = Delivery.objects.get(event="test")
    assert hook_server.received == []  # queued, not sent from the request
    send_delivery.call_local(delivery.pk)
    assert hook_server.received[0]["valid"] and hook_server.payloads()[0]["event"] == "test"
    log = admin_client.get(reverse("admin:micboard_delivery_changelist"), {"state__exact": "sent"}).content.decode()
    assert "webhook FOH chat" in log
    page = admin_client.get(reverse("admin:micboard_delivery_change", args=[delivery.pk])).content.decode()
    assert 'name="_save"' not in page


def test_subscription_and_alert_rule_forms_refuse_what_cannot_work(rack, admin_client):
    _, ch = rack
    user = User.objects.create_user("sam", email="sam@example.org")
    add = reverse("admin:micboard_alertsubscription_add")
    base = {"user": user.pk, "active": "on", "events": ["opened"]}
    half = admin_client.post(add, base | {"quiet_start": "22:00"}).content.decode()
    assert "Quiet hours need both a start and an end" in half
    empty = admin_client.post(add, base | {"quiet_start": "22:00", "quiet_end": "22:00"}).content.decode()
    assert "empty" in empty
    assert admin_client.post(add, base | {"quiet_start": "22:00", "quiet_end": "07:00"}).status_code == 302
    assert AlertSubscription.objects.get().quiet_end == clock(7, 0)

    assignment = ch[1].assignment
    change = reverse("admin:micboard_assignment_change", args=[assignment.pk])
    form = {
        "performer": assignment.performer_id, "channel": ch[1].pk, "priority": "3", "alerts_enabled": "on",
        "notes": "", "alert_rule-TOTAL_FORMS": "1", "alert_rule-INITIAL_FORMS": "0", "alert_rule-MIN_NUM_FORMS": "0",
        "alert_rule-MAX_NUM_FORMS": "1", "alert_rule-0-battery_bars": "2", "alert_rule-0-battery_minutes": "5000",
    }  # fmt: skip
    refused = admin_client.post(change, form).content.decode()
    assert "Between 0 and 1440." in refused
    assert admin_client.post(change, form | {"alert_rule-0-battery_minutes": "45"}).status_code == 302
    assignment.refresh_from_db()
    assert (assignment.alert_rule.battery_bars, assignment.alert_rule.battery_minutes) == (2, 45)
    assert AlertService.rules_for(assignment=assignment).battery_minutes == 45
