"""The per-peer request budget (p2p.net.session.Budget): bounded in count and
bytes, first come first served, and a release wakes one waiter, so a large
file's thousands of content-defined blocks waiting for a slot cost linear
time, not a wake-up of every waiter per answer."""

import gevent
import gevent.event
import pytest

from p2p.net import session
from p2p.net.session import Budget, SessionClosed


def test_thousands_of_waiters_are_served_in_order_with_a_few_wake_ups_each(monkeypatch):
    waits = []

    class Counting(gevent.event.Event):
        def wait(self, timeout=None):
            waits.append(1)
            return super().wait(timeout)

    monkeypatch.setattr(session, "Event", Counting)
    budget, order, inside = Budget(4, 10 ** 9), [], []

    def request(i):
        budget.acquire(1)
        inside.append(budget.used_count)
        order.append(i)
        gevent.sleep(0)
        budget.release(1)

    workers = [gevent.spawn(request, i) for i in range(3000)]
    gevent.joinall(workers, timeout=30, raise_error=True)
    assert order == list(range(3000)) and max(inside) <= 4
    assert len(waits) <= 3 * 3000     # one shared event woken per release: ~ 3000^2 / 8


def test_the_byte_bound_holds_and_close_wakes_every_waiter():
    budget = Budget(10, 100)
    budget.acquire(60)
    second = gevent.spawn(budget.acquire, 60)
    third = gevent.spawn(budget.acquire, 1)     # fits, but never overtakes the second
    gevent.sleep(0.01)
    assert not second.ready() and not third.ready() and budget.used_count == 1
    budget.release(60)
    gevent.joinall([second, third], timeout=5, raise_error=True)
    assert (budget.used_count, budget.used_size) == (2, 61)
    waiting = [gevent.spawn(budget.acquire, 50) for _ in range(3)]
    gevent.sleep(0.01)
    budget.close()
    gevent.joinall(waiting, timeout=5)
    assert all(isinstance(w.exception, SessionClosed) for w in waiting)
    with pytest.raises(SessionClosed):
        budget.acquire(1)
