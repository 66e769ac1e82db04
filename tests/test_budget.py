"""Session.Budget: bounded outstanding block requests, served in order, cheap
with thousands of waiters (a large file cut into many blocks queues them all)."""

import gevent
import greenlet
import pytest

from p2p.net.session import Budget, SessionClosed


def switches_during(fn) -> int:
    """How many greenlet switches happen while ``fn`` runs and the hub settles."""
    count = [0]

    def trace(event, args):
        if event in ("switch", "throw"):
            count[0] += 1
    previous = greenlet.settrace(trace)
    try:
        fn()
        gevent.sleep(0)
        gevent.sleep(0)
    finally:
        greenlet.settrace(previous)
    return count[0]


def test_a_release_wakes_one_waiter_not_all():
    budget = Budget(1, 1 << 30)
    budget.acquire(10)
    got = []
    waiters = [gevent.spawn(lambda i=i: (budget.acquire(10), got.append(i))) for i in range(500)]
    gevent.sleep(0)   # every waiter is queued
    assert switches_during(lambda: budget.release(10)) < 20, "a release woke many waiters"
    assert got == [0]
    for i in range(1, 500):
        budget.release(10)
        gevent.sleep(0)
    gevent.joinall(waiters)
    assert got == list(range(500)), "waiters were not served in order"
    assert (budget.used_count, budget.used_size) == (1, 10)


def test_the_size_bound_holds_and_a_lone_large_request_passes():
    budget = Budget(10, 100)
    budget.acquire(60)
    second = gevent.spawn(budget.acquire, 60)
    gevent.sleep(0.01)
    assert not second.dead, "went over the byte bound"
    budget.release(60)
    second.join(1)
    assert second.successful() and budget.used_size == 60
    budget.release(60)
    budget.acquire(500)   # larger than the whole bound, but alone: it passes
    assert budget.used_count == 1


def test_close_wakes_every_waiter_with_session_closed_and_a_killed_waiter_leaves_the_queue():
    budget = Budget(1, 100)
    budget.acquire(1)
    killed = gevent.spawn(budget.acquire, 1)
    waiters = [gevent.spawn(budget.acquire, 1) for _ in range(3)]
    gevent.sleep(0)
    killed.kill()
    budget.release(1)
    gevent.sleep(0)
    assert waiters[0].successful() and not waiters[1].dead   # the killed one was skipped
    budget.close()
    gevent.joinall(waiters, timeout=1)
    assert all(isinstance(w.exception, SessionClosed) for w in waiters[1:])
    with pytest.raises(SessionClosed):
        budget.acquire(1)
