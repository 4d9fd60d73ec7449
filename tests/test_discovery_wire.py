"""Discovery on the wire: SLPv2 Attribute Replies, DNS messages, and both heard over loopback multicast."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest

from micboard.drivers import dcid, mdns, slp
from micboard.exceptions import ProtocolError
from micboard.simulators.announce import Announcer, ShureAnnouncement, SscAnnouncement

# protocols.md §3.1: the DCID shape Shure devices announce.
SPEC_DCID = "042D5A00-FD5A-11E3-A553-0015C5F3F612"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slp_datagram(attributes: bytes, *, function: int = 7, version: int = 2, xid: int = 0x1234) -> bytes:
    """An SLPv2 message laid out by hand after RFC 2608 §8 and §10.4 (not by micboard's encoder)."""
    body = struct.pack("!HH", 0, len(attributes)) + attributes + b"\x00"
    length = 14 + 2 + len(body)
    return (
        bytes([version, function])
        + length.to_bytes(3, "big")
        + b"\x00\x00"  # flags
        + b"\x00\x00\x00"  # next extension offset
        + struct.pack("!HH", xid, 2)
        + b"en"
        + body
    )


# ---------------------------------------------------------------------------------------------- SLP


def test_an_attribute_reply_names_the_device_by_its_dcid_and_source_address():
    data = slp_datagram(f"(csl-esta.dmp=t:ESTA.DMP/1.0;cd:{SPEC_DCID.lower()}),(acn-uacn=Rack\\2C 1)".encode())
    reply = slp.decode_attribute_reply(data)
    assert (reply.xid, reply.language, reply.error) == (0x1234, "en", 0)
    assert reply.dcid == SPEC_DCID
    assert reply.attribute("acn-uacn") == "Rack, 1"  # RFC 2608 escapes undone
    found = slp.announcement_from(data, "10.0.0.31")
    assert found == slp.SlpAnnouncement(host="10.0.0.31", dcid=SPEC_DCID, model=None, name="Rack, 1")


def test_micboards_dcid_map_names_the_model_once_loaded(tmp_path):
    path = tmp_path / "dcid.json"
    path.write_text(
        json.dumps(
            {
                SPEC_DCID: {"model": "ULX-D1GDual", "model_name": "ULX-D Dual", "band": "G50"},
                "11111111-2222-3333-4444-555555555555": {"model": "ULXD2", "model_name": "handheld"},
            }
        )
    )
    try:
        assert dcid.load_dcid_file(path) == 1  # the transmitter entry is not a receiver micboard polls
        data = slp_datagram(f"(csl-esta.dmp=cd:{SPEC_DCID})".encode())
        assert slp.announcement_from(data, "10.0.0.31").model == "ULXD4D"
    finally:
        dcid._loaded.clear()
    assert dcid.dcid_model(SPEC_DCID) is None


def test_micboards_encoder_lays_out_the_same_bytes_as_the_rfc():
    attributes = slp.device_attributes(dcid=SPEC_DCID, name="Rack 1")
    assert slp.encode_attribute_reply(attributes, xid=0x1234) == slp_datagram(attributes.encode())


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x02\x07\x00", "header needs 14 bytes"),
        (slp_datagram(b"(x=y)", version=1), "version 1"),
        (slp_datagram(b"(x=y)")[:-3], "length field says"),
        (slp_datagram(b"(x=y)")[:14] + b"\x00\x40en", "length field says"),
    ],
)
def test_a_datagram_that_is_not_slp_v2_is_refused(data, problem):
    with pytest.raises(ProtocolError, match=problem):
        slp.decode_attribute_reply(data)
    assert slp.announcement_from(data, "10.0.0.1") is None


def test_a_length_that_runs_past_the_datagram_is_refused():
    data = bytearray(slp_datagram(b"(csl-esta.dmp=cd:" + SPEC_DCID.encode() + b")"))
    data[18:20] = struct.pack("!H", 4000)  # attr-list length beyond the datagram
    with pytest.raises(ProtocolError, match="attribute list runs past"):
        slp.decode_attribute_reply(bytes(data))


def test_other_slp_messages_and_replies_without_a_dcid_are_not_announcements():
    assert slp.decode_attribute_reply(slp_datagram(b"", function=1)) is None  # a Service Request
    assert slp.announcement_from(slp_datagram(b"(acn-fctn=Something)"), "10.0.0.1") is None


# ---------------------------------------------------------------------------------------------- DNS


def test_a_compressed_dns_sd_answer_gives_the_instance_port_txt_and_address():
    header = struct.pack("!HHHHHH", 0, 0x8400, 1, 1, 0, 3)
    question = b"\x04_ssc\x04_udp\x05local\x00" + struct.pack("!HH", 12, 1)  # name at offset 12
    ptr_rdata = b"\x09EM4 Stage\xc0\x0c"
    ptr = b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 120, len(ptr_rdata)) + ptr_rdata
    instance_at = len(header) + len(question) + 12  # the PTR's rdata
    srv_rdata = struct.pack("!HHH", 0, 0, 4545) + b"\x07em4-123\xc0" + bytes([12 + 10])  # -> "local"
    srv = bytes([0xC0, instance_at]) + struct.pack("!HHIH", 33, 0x8001, 120, len(srv_rdata)) + srv_rdata
    target_at = len(header) + len(question) + len(ptr) + 12 + 6  # "em4-123" inside the SRV's rdata
    txt_rdata = b"\x09txtvers=1\x0dversion=4.1.0"
    txt = bytes([0xC0, instance_at]) + struct.pack("!HHIH", 16, 0x8001, 120, len(txt_rdata)) + txt_rdata
    a = bytes([0xC0, target_at]) + struct.pack("!HHIH", 1, 0x8001, 120, 4) + socket.inet_aton("10.0.0.21")
    message = mdns.decode(header + question + ptr + srv + txt + a)
    assert message.questions == (mdns.Question(("_ssc", "_udp", "local"), mdns.TYPE_PTR),)
    assert message.additionals[0].data == mdns.Srv(0, 0, 4545, ("em4-123", "local"))
    assert mdns.services_in(message, source="10.0.0.21") == [
        mdns.DnsSdService(
            instance="EM4 Stage", host="10.0.0.21", port=4545, target="em4-123.local", address="10.0.0.21",
            txt={"txtvers": "1", "version": "4.1.0"},
        )
    ]  # fmt: skip


def test_a_query_asks_for_ptr_records_and_the_unicast_bit_round_trips():
    data = mdns.browse_query(qid=7)
    assert data == struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + b"\x04_ssc\x04_udp\x05local\x00" + b"\x00\x0c\x00\x01"
    question = mdns.Question(("_ssc", "_udp", "local"), mdns.TYPE_PTR, unicast=True)
    assert mdns.decode(mdns.encode(mdns.DnsMessage(questions=(question,)))).questions == (question,)
    assert mdns.services_in(mdns.decode(data), source="10.0.0.1") == []  # a question is not an answer


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (struct.pack("!HHHHHH", 0, 0x8400, 1, 0, 0, 0) + b"\xc0\x0c\x00\x0c\x00\x01", "does not point backwards"),
        (struct.pack("!HHHHHH", 0, 0x8400, 1, 0, 0, 0) + b"\x04_ss", "runs past the end"),
        (struct.pack("!HHHHHH", 0, 0x8400, 0, 65535, 0, 0), "more than 64 entries"),
        (struct.pack("!HHHHHH", 0, 0x8400, 1, 0, 0, 0) + b"\x80abc\x00\x00\x0c\x00\x01", "unknown DNS label type"),
        (struct.pack("!HHHHHH", 0, 0x8400, 1, 0, 0, 0) + b"\x3fa" * 5, "runs past the end"),
        (struct.pack("!HHHHHH", 0, 0x8400, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00", "longer than 255"),
        (b"\x00\x00", "truncated"),
    ],
)
def test_hostile_dns_messages_are_refused_with_bounded_work(data, problem):
    with pytest.raises(ProtocolError, match=problem):
        mdns.decode(data)


def test_a_record_whose_data_disagrees_with_its_length_is_refused():
    record = b"\x01a\x00" + struct.pack("!HHIH", 12, 1, 10, 3) + b"\x05local\x00"  # a 7-byte name in 3 bytes
    with pytest.raises(ProtocolError, match="does not match its length"):
        mdns.decode(struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + record)


def test_a_label_longer_than_63_bytes_is_not_encoded():
    with pytest.raises(ProtocolError, match=r"1\.\.63 bytes"):
        mdns.encode(mdns.DnsMessage(questions=(mdns.Question(("x" * 64, "local")),)))


# ------------------------------------------------------------------------ announcements over loopback


async def hear(announcer: Announcer, seconds: float = 0.8):
    await announcer.start()
    try:
        return await asyncio.gather(
            slp.listen(seconds=seconds, interface="127.0.0.1", port=announcer.slp_port),
            mdns.browse(seconds=seconds, interface="127.0.0.1", port=announcer.mdns_port, every=0.3),
        )
    finally:
        await announcer.stop()


def test_announcements_are_heard_on_loopback_from_each_devices_own_address():
    powered = {"ad": True, "spare": False}
    announcer = Announcer(
        shure=[
            ShureAnnouncement("127.0.88.11", dcid.model_dcid("ULXD4Q"), "ULXBAND"),
            ShureAnnouncement("127.0.88.12", dcid.model_dcid("AD4D"), alive=lambda: powered["ad"]),
            ShureAnnouncement("127.0.88.13", dcid.model_dcid("QLXD4"), alive=lambda: powered["spare"]),
        ],
        ssc=[SscAnnouncement("127.0.88.21", 4545, "EM4 Stage", "4.1.0")],
        slp_port=free_udp_port(),
        mdns_port=free_udp_port(),
        every=0.2,
    )
    shure, ssc = asyncio.run(hear(announcer))
    assert [(a.host, a.model, a.name) for a in shure] == [
        ("127.0.88.11", "ULXD4Q", "ULXBAND"),
        ("127.0.88.12", "AD4D", ""),
    ]  # the powered-off QLX-D stays quiet
    assert [(s.host, s.port, s.instance, s.txt) for s in ssc] == [
        ("127.0.88.21", 4545, "EM4 Stage", {"txtvers": "1", "version": "4.1.0"})
    ]


def test_every_announcer_socket_multicasts_with_ttl_0_on_the_loopback_interface():
    async def sockets():
        announcer = Announcer(
            shure=[ShureAnnouncement("127.0.88.31", dcid.model_dcid("AD4Q"))],
            ssc=[SscAnnouncement("127.0.88.32", 45, "EM2")],
            slp_port=free_udp_port(),
            mdns_port=free_udp_port(),
        )
        await announcer.start()
        try:
            socks = [*announcer._senders.values(), announcer._listener.get_extra_info("socket")]
            return [
                (
                    s.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL),
                    socket.inet_ntoa(s.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)),
                )
                for s in socks
            ]
        finally:
            await announcer.stop()

    assert set(asyncio.run(sockets())) == {(0, "127.0.0.1")}
