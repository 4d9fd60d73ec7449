"""A 24-hour show at high speed: the real simulator and driver over loopback, the history pipeline and the report.

The show's ground truth is the simulator's (runtime used) and the harness's own log (swaps, fades); the test
asserts that the history keeps the rows its tiers promise, within the README's size, and that the report
says what the simulator did (see micboard/showrun.py and docs/report.md).
"""

import logging

import pytest

from micboard.showrun import RUNTIME_TOLERANCE_MINUTES, SIZE_MARGIN, run_show


@pytest.mark.django_db(transaction=True)  # each step commits, as a link holder's do
def test_a_24_hour_show_keeps_its_stated_size_and_the_report_matches_the_simulator(caplog):
    caplog.set_level(logging.WARNING, logger="micboard")
    result = run_show(hours=24)
    print("\n".join(result.lines()))  # the figures, for a run with -s
    assert result.polls == 8280 + 3600, "every 10 show-seconds for 23 h, then every second"
    assert result.rows == result.expected_rows() == {1: 3600 * 8, 10: 8280 * 8, 60: 0}
    assert result.table_bytes is None or result.table_bytes <= result.stated_bytes() * SIZE_MARGIN
    made = sum(t.swaps for t in result.truth.values())
    assert made >= 20, "the crew swapped packs all day"
    for where, truth in result.truth.items():
        pack = result.packs[where]
        assert pack.swaps == truth.swaps, where
        used = truth.used_seconds / 60
        assert abs(pack.runtime_used_minutes - used) <= RUNTIME_TOLERANCE_MINUTES * (truth.swaps + 1), where
        assert (pack.dropouts, pack.dropout_seconds) == (truth.dropouts, truth.dropout_seconds), where
    assert result.problems() == []
    flagged = {p.label for p in result.report.untrusted}
    assert flagged == {"Show run Axient Cast 2 (Juliet)", "Show run ULX-D Band 1 (Lead Vox)"}
