"""A receiver's host: an IP address or a name that resolves, written plainly; one receiver per device."""

from __future__ import annotations

import pytest
from django.urls import reverse

from micboard.exceptions import ConfigurationError
from micboard.models import Receiver
from micboard.services import DeviceService
from micboard.services.addresses import clean_host
from tests.factories import make_receiver

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("http://10.0.0.5", "Write the host without a scheme: 10.0.0.5, not http://10.0.0.5."),
        ("https://rx1.venue.lan/api", "Write the host without a scheme: rx1.venue.lan"),
        ("10.0.0. 5", "A host has no spaces"),
        ("rack 1", "A host has no spaces"),
        ("rx1.venue.lan:2202", "Put the port in the Port field: host rx1.venue.lan, port 2202."),
        ("[::1]", "Write an IPv6 address without brackets: ::1."),
        ("rx_1.venue.lan", "is not an IP address or a host name"),
        ("-rx.venue.lan", "is not an IP address or a host name"),
        ("10.0.0.5/24", "is not an IP address or a host name (no path, no user)"),
        ("", "A receiver needs a host"),
    ],
)
def test_a_host_that_is_not_an_address_or_a_name_is_refused_saying_how_to_write_it(typed, message):
    with pytest.raises(ConfigurationError) as caught:
        make_receiver(name="Typo", model="ULXD4", host=typed, port=2202)
    assert message in str(caught.value)
    assert not Receiver.objects.exists()


def test_a_host_is_stored_as_the_address_or_name_it_is():
    assert clean_host("  10.0.0.5 ") == "10.0.0.5"
    assert clean_host("rx1.venue.lan.") == "rx1.venue.lan"
    assert clean_host("0:0:0:0:0:0:0:1") == "::1"
    assert make_receiver(name="Spaced", model="ULXD4", host=" 127.0.0.1 ", port=4100).host == "127.0.0.1"


def test_a_name_that_does_not_resolve_is_refused_before_anything_is_stored():
    with pytest.raises(ConfigurationError, match=r"Cannot resolve host name rack-7\.venue\.invalid"):
        make_receiver(name="Rack 7", model="ULXD4", host="rack-7.venue.invalid", port=2202)
    assert not Receiver.objects.exists()


def test_localhost_and_127_0_0_1_on_one_port_are_one_device():
    first = make_receiver(name="ULX-D Band", model="ULXD4Q", host="127.0.0.1", port=4200)
    with pytest.raises(ConfigurationError) as caught:
        make_receiver(name="Band again", model="ULXD4Q", host="localhost", port=4200)
    assert str(caught.value) == (
        "localhost:4200 is the same device as “ULX-D Band” (127.0.0.1:4200): a receiver is added once."
    )
    make_receiver(name="Next door", model="ULXD4", host="localhost", port=4201)  # another port: another device
    assert list(Receiver.objects.order_by("pk").values_list("name", flat=True)) == [first.name, "Next door"]


def test_the_same_device_id_twice_is_refused_with_the_receiver_that_has_it():
    DeviceService.create_receiver(name="Axient Cast", model="AD4Q", host="127.0.0.1", port=4300, device_id="AXCAST")
    with pytest.raises(ConfigurationError) as caught:
        DeviceService.create_receiver(name="Cast copy", model="AD4Q", host="127.0.0.2", port=4300, device_id="AXCAST")
    assert "“Axient Cast” (127.0.0.1:4300) is already the device with id AXCAST" in str(caught.value)
    # A receiver whose id is not known yet (typed in setup, never polled) is not compared by id.
    DeviceService.create_receiver(name="Typed in", model="ULXD4", host="127.0.0.3", port=4300, device_id="")
    assert Receiver.objects.count() == 2


def test_moving_a_receiver_onto_another_ones_device_is_refused_and_nothing_is_saved():
    DeviceService.create_receiver(name="Rack A", model="ULXD4", host="127.0.0.1", port=4400)
    moving = DeviceService.create_receiver(name="Rack B", model="ULXD4", host="127.0.0.1", port=4401)
    moving.host, moving.port = "localhost", 4400
    with pytest.raises(ConfigurationError, match="is the same device as “Rack A”"):
        DeviceService.update_receiver(receiver=moving)
    moving.refresh_from_db()
    assert (moving.host, moving.port) == ("127.0.0.1", 4401)


def test_a_receiver_whose_name_stopped_resolving_can_still_be_renamed():
    receiver = make_receiver(name="Rack C", model="ULXD4", host="localhost", port=4500)
    Receiver.objects.filter(pk=receiver.pk).update(host="rack-c.venue.invalid")  # the venue's DNS changed
    receiver.refresh_from_db()
    receiver.name = "Rack C (spare)"
    DeviceService.update_receiver(receiver=receiver)  # the address did not change: not looked up
    assert Receiver.objects.get(pk=receiver.pk).name == "Rack C (spare)"


def test_the_admin_shows_the_address_problem_on_the_host_field(admin_client):
    existing = make_receiver(name="ULX-D Band", model="ULXD4Q", host="127.0.0.1", port=4600)
    form = {
        "name": "Clash", "manufacturer": existing.manufacturer_id, "model": "ULXD4", "driver": "shure_tcp",
        "port": 4600, "link": "push", "active": "on", "channels-TOTAL_FORMS": 0, "channels-INITIAL_FORMS": 0,
    }  # fmt: skip
    url = reverse("admin:micboard_receiver_add")
    for host, message in (
        ("localhost", "localhost:4600 is the same device as “ULX-D Band” (127.0.0.1:4600)"),
        ("http://127.0.0.5", "Write the host without a scheme: 127.0.0.5, not http://127.0.0.5."),
    ):
        response = admin_client.post(url, {**form, "host": host})
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert message in " ".join(errors["host"])
    assert not Receiver.objects.filter(name="Clash").exists()
