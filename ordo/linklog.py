"""Logging for a stream that reconnects in a loop (a shard's log stream, its
peers' input streams): one line when it breaks, again only if the reason
changes (its status code) or every ``REMIND_S`` while it stays broken, and one when it is
back. A peer that is down for an hour is not a line per retry, and a
cluster starting up (shards before the coordinator) is a line per stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REMIND_S = 30.0


class LinkLog:
    def __init__(self, log: logging.Logger, what: str, remind_s: float = REMIND_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.what, self.remind_s, self.clock = log, what, remind_s, clock
        self.since: float | None = None  # broken since (None: up, or never broken)
        self.logged_at = 0.0
        self.reason = ""  # the status code of the last reason logged

    def broke(self, reason: str) -> None:
        """``reason``: "CODE: details"; a new CODE is said at once."""
        now = self.clock()
        code = reason.split(":", 1)[0]
        if self.since is None:
            self.since, self.logged_at, self.reason = now, now, code
            self.log.info("%s broke: %s", self.what, reason)
        elif code != self.reason or now - self.logged_at >= self.remind_s:
            self.logged_at, self.reason = now, code
            self.log.info("%s still down after %.0f s: %s", self.what, now - self.since, reason)
        else:
            self.log.debug("%s still down: %s", self.what, reason)

    def up(self) -> None:
        """A message came on the stream again: say so if its break was logged.
        (Not on connecting alone: a stream whose handler fails at once would
        then say "back" and "broke" at every retry.)"""
        if self.since is not None:
            self.log.info("%s back after %.1f s", self.what, self.clock() - self.since)
            self.since = None
