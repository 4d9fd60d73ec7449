"""Shure command strings: framing as bytes arrive, and message parsing (no network, no DB)."""

from __future__ import annotations

import pytest

from micboard.drivers.shure_wire import MAX_FRAME, FrameBuffer, Message, parse_message
from micboard.exceptions import ProtocolError

# --------------------------------------------------------------------------------------------------------
# FrameBuffer
# --------------------------------------------------------------------------------------------------------

STREAM_FRAMES = [
    "< REP DEVICE_ID {Rack1   } >",
    "< REP 1 CHAN_NAME {Lead Vox                       } >",
    "< SAMPLE 1 ALL 005 031 102 102 BB 31 086 31 065 >",
    "< REP ERR >",
]
STREAM = "".join(STREAM_FRAMES).encode("ascii")


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_frames_split_across_two_reads_at_every_offset(cut):
    buffer = FrameBuffer()
    frames = buffer.feed(STREAM[:cut]) + buffer.feed(STREAM[cut:])
    assert frames == STREAM_FRAMES
    assert buffer.pending == ""
    assert buffer.stray == 0
    assert buffer.dropped == 0


def test_frames_fed_one_byte_at_a_time():
    buffer = FrameBuffer()
    frames = []
    for i in range(len(STREAM)):
        frames += buffer.feed(STREAM[i : i + 1])
    assert frames == STREAM_FRAMES


def test_several_frames_coalesced_in_one_read():
    assert FrameBuffer().feed(STREAM) == STREAM_FRAMES


def test_incomplete_tail_is_kept_until_its_end_arrives():
    buffer = FrameBuffer()
    assert buffer.feed(b"< REP 1 BATT_BARS 004 >< REP 1 TX_TY") == ["< REP 1 BATT_BARS 004 >"]
    assert buffer.pending == "< REP 1 TX_TY"
    assert buffer.feed(b"PE ULXD2 >") == ["< REP 1 TX_TYPE ULXD2 >"]


def test_garbage_between_frames_is_skipped():
    data = b"\x00\xffnoise< REP 1 BATT_BARS 004 >more junk\t< REP 1 BATT_BARS 003 >trailing"
    buffer = FrameBuffer()
    assert buffer.feed(data) == ["< REP 1 BATT_BARS 004 >", "< REP 1 BATT_BARS 003 >"]
    assert buffer.pending == ""  # "trailing" has no "<": it can never become a frame


def test_close_without_open_is_discarded_and_counted():
    buffer = FrameBuffer()
    assert buffer.feed(b"stray > text >< REP 1 BATT_BARS 002 >") == ["< REP 1 BATT_BARS 002 >"]
    assert buffer.stray == 2


def test_frame_starts_at_the_last_open_before_the_close():
    buffer = FrameBuffer()
    assert buffer.feed(b"< REP 1 CHAN_NA< REP 1 BATT_BARS 001 >") == ["< REP 1 BATT_BARS 001 >"]


def test_overlong_unterminated_tail_is_dropped_and_bounded():
    buffer = FrameBuffer()
    buffer.feed(b"< REP 1 CHAN_NAME {")
    for _ in range(20):
        assert buffer.feed(b"x" * 500) == []
        assert len(buffer.pending) <= MAX_FRAME
    assert buffer.dropped >= 1
    # The end of the dropped frame is a ">" without "<"; the next real frame still parses.
    assert buffer.feed(b"xxx} >< REP 1 BATT_BARS 004 >") == ["< REP 1 BATT_BARS 004 >"]
    assert buffer.stray == 1


def test_overlong_complete_frame_in_one_read_is_dropped():
    buffer = FrameBuffer(max_frame=64)
    long_frame = b"< REP 1 CHAN_NAME {" + b"y" * 100 + b"} >"
    assert buffer.feed(long_frame + b"< REP 1 BATT_BARS 004 >") == ["< REP 1 BATT_BARS 004 >"]
    assert buffer.dropped == 1


def test_cr_lf_anywhere():
    data = b"< REP 1 BATT_BARS 004 >\r\n< REP\r\n 1 TX_TYPE ULXD2 >\r\n\r\n< REP 1 BATT_TYPE LION >\n"
    frames = FrameBuffer().feed(data)
    assert len(frames) == 3
    assert [parse_message(f).value for f in frames] == ["004", "ULXD2", "LION"]


def test_non_ascii_bytes_are_replaced_not_fatal():
    frames = FrameBuffer().feed("< REP 1 CHAN_NAME {Caf\u00e9} >".encode())
    assert len(frames) == 1
    assert parse_message(frames[0]).value.startswith("Caf")


# --------------------------------------------------------------------------------------------------------
# parse_message
# --------------------------------------------------------------------------------------------------------


def test_braced_value_with_spaces_and_padding():
    msg = parse_message("< REP 1 CHAN_NAME {Lead Vox                       } >")
    assert msg == Message("REP", channel=1, prop="CHAN_NAME", value="Lead Vox")


def test_empty_braces_give_empty_string():
    assert parse_message("< REP 1 CHAN_NAME {  } >").value == ""
    assert parse_message("< REP 1 CHAN_NAME {} >").value == ""


def test_braced_value_keeps_inner_spaces_and_punctuation():
    assert parse_message("< REP 2 CHAN_NAME {A  B,c-1 } >").value == "A  B,c-1"


def test_device_level_property_has_no_channel():
    msg = parse_message("< REP DEVICE_ID {Rack1   } >")
    assert (msg.verb, msg.channel, msg.prop, msg.value) == ("REP", None, "DEVICE_ID", "Rack1")


def test_rep_err():
    assert parse_message("< REP ERR >") == Message("ERR")


def test_report_keyword_is_a_rep():
    msg = parse_message("< REPORT 1 FREQUENCY 578000 >")
    assert (msg.verb, msg.channel, msg.prop, msg.value) == ("REP", 1, "FREQUENCY", "578000")


def test_unbraced_multi_word_value():
    assert parse_message("< REPORT 2 CHAN_NAME IEM Mix >").value == "IEM Mix"


def test_rssi_with_and_without_antenna_index():
    with_index = parse_message("< REP 1 RSSI 2 064 >")
    assert (with_index.prop, with_index.index, with_index.value) == ("RSSI", 2, "064")
    without = parse_message("< REP 1 RSSI 068 >")
    assert (without.index, without.value) == (None, "068")


def test_slot_sub_index():
    msg = parse_message("< REP 1 SLOT_STATUS 8 EMPTY >")
    assert (msg.channel, msg.prop, msg.index, msg.value) == (1, "SLOT_STATUS", 8, "EMPTY")
    braced = parse_message("< REP 3 SLOT_TX_DEVICE_ID 2 {  } >")
    assert (braced.index, braced.value) == (2, "")


def test_sample_keeps_raw_tokens():
    msg = parse_message("< SAMPLE 1 ALL AX 092 031 >")
    assert msg == Message("SAMPLE", channel=1, prop="ALL", tokens=("AX", "092", "031"))


def test_property_without_value():
    assert parse_message("< REP 1 FLASH >").value is None


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "<>",
        "< >",
        "REP 1 BATT_BARS 004",
        "< HELLO 1 X >",
        "< GET 1 CHAN_NAME >",
        "< REP >",
        "< REP 1 >",
        "< REP 1 chan_name x >",
        "< REP 1 CHAN_NAME {abc >",
        "< REP 1 CHAN_NAME abc} >",
        "< REP 1 CHAN_NAME {a} b >",
        "< REP 1 FOO bar {a} >",
        "< SAMPLE X ALL 1 2 3 >",
        "< SAMPLE 1 ALL >",
        "< SAMPLE 1 ALL {x} >",
        "< \ufffd\ufffd >",
    ],
)
def test_garbage_frames_raise_protocol_error(frame):
    with pytest.raises(ProtocolError):
        parse_message(frame)
