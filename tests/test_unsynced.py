"""The not-synced table: one warning per path and reason, back-off, bounded."""

import logging

from p2p import limits
from p2p.folder.unsynced import Unsynced


def test_warns_once_per_path_and_reason(caplog):
    table = Unsynced()
    with caplog.at_level(logging.WARNING):
        for i in range(50):
            table.report("a\nb", "newline in name", now=float(i))
    assert [r.getMessage() for r in caplog.records] == ["not syncing 'a\\nb': newline in name"]
    assert table.listing()[0]["attempts"] == 50
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        table.report("a\nb", "another reason", now=60.0)
    assert len(caplog.records) == 1


def test_backoff_doubles_up_to_the_cap():
    table = Unsynced()
    delays = []
    for i in range(20):
        problem = table.report("fifo", "a FIFO is in the way", now=1000.0)
        delays.append(problem.retry_at - 1000.0)
    assert delays[0] == limits.UNSYNCED_RETRY_MIN
    assert delays[1] == 2 * limits.UNSYNCED_RETRY_MIN
    assert delays[-1] == limits.UNSYNCED_RETRY_MAX
    assert all(a <= b for a, b in zip(delays, delays[1:]))


def test_clear_and_bound(monkeypatch):
    monkeypatch.setattr(limits, "MAX_UNSYNCED", 3)
    table = Unsynced()
    for i in range(5):
        table.report(f"p{i}", "bad", now=0.0)
    assert len(table.listing()) == 3 and len(table) == 5
    assert table.clear("p0") and not table.clear("p0")
    assert "p0" not in table and "p1" in table
