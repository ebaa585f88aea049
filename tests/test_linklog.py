"""LinkLog: how a reconnecting stream reports itself (pure, with a clock the test moves)."""

from __future__ import annotations

import logging

import pytest

from ordo.linklog import LinkLog


def test_a_long_outage_is_a_few_lines_not_one_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    link = LinkLog(logging.getLogger("t"), "log stream", remind_s=30.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="t")
    for i in range(120):  # two minutes of retries, one every second
        # The same code with other details is the same reason.
        link.broke("UNAVAILABLE: connection refused" if i % 2 else "UNAVAILABLE: broke")
        now[0] += 1.0
    link.broke("PERMISSION_DENIED: bad token")  # a new reason is said at once
    link.broke("PERMISSION_DENIED: bad token")
    link.up()
    link.up()  # once
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "log stream broke: UNAVAILABLE: broke",
        "log stream still down after 30 s: UNAVAILABLE: broke",
        "log stream still down after 60 s: UNAVAILABLE: broke",
        "log stream still down after 90 s: UNAVAILABLE: broke",
        "log stream still down after 120 s: PERMISSION_DENIED: bad token",
        "log stream back after 120.0 s",
    ]


def test_a_stream_that_never_broke_says_nothing_when_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = LinkLog(logging.getLogger("t"), "peer 1 stream")
    caplog.set_level(logging.DEBUG, logger="t")
    link.up()
    assert not caplog.records
    link.broke("x")
    link.broke("x")  # within the reminder: debug only
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG]
