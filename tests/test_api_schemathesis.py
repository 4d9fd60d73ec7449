"""Schemathesis against /api/schema/: generated requests, as a signed-in operator (token), never a 5xx
and never a response that breaks the schema. Bounded: a few deterministic examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import positive_data_acceptance

from micboard.services import AssignmentService, BoardService, DeviceService, GroupService, PollOutcome
from tests.factories import make_receiver, make_user, pack_off, pack_on, reading
from web.wsgi import application

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_token(db, settings) -> str:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "100000/minute", "anon": "100000/minute"}
    }
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    rx = make_receiver(name="Band Rack", model="ULXD4Q")
    DeviceService.record_poll_results(
        outcomes=[PollOutcome(rx.pk, reading=reading(pack_on(1, bars=5), pack_on(2, bars=1), pack_off(3)))]
    )
    AssignmentService.assign(channel=rx.channels.get(number=1), performer="Maya")
    GroupService.set_tiles(name="Band", channels=[rx.channels.get(number=1), None])
    BoardService.bump_version()
    return Token.objects.create(user=make_user("robot", role="operator")).key


@pytest.fixture
def api_schema(operator_token):
    # The WSGI handler closes the database connection after each request; in a test that would close
    # the test's own connection (Django's test client disconnects the same handler).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/schema/?format=json", application, headers={"Authorization": f"Token {operator_token}"}
        )
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_api_conforms_to_its_schema(api_schema, operator_token):
    """Every operation of the schema, 10 deterministic examples each (schemathesis's pytest plugin needs a
    pytest older than ours for lazily loaded schemas, so the operations are driven with hypothesis here)."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            # Every default check but "valid data is accepted": data valid by the schema may still name a
            # channel that does not exist or a location name taken by an earlier example (a 400 or 404).
            case.call_and_validate(
                headers={"Authorization": f"Token {operator_token}"}, excluded_checks=[positive_data_acceptance]
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them all
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
