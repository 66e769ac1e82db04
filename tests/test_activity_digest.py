"""A burst of activity lines says its first ones in full and counts the rest
by kind, per window of time and at the burst's end; nothing is dropped
without being counted, and a quiet stream is said line by line."""

from hypothesis import given, settings, strategies as st

from p2p.logs import Digest


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def digest(limit=3, window=1.0):
    clock, lines = Clock(), []
    return Digest(">", limit, window, clock=clock, say=lines.append), clock, lines


def test_the_first_lines_are_said_and_the_rest_counted_by_kind():
    d, clock, lines = digest()
    for i in range(5):
        d.add("create", f"> create f{i}")
    d.add("delete", "> delete g")
    assert lines == ["> create f0", "> create f1", "> create f2"]
    d.flush()
    assert lines[3:] == ["> ... and 3 more (2 create, 1 delete; `p2p log` lists them)"]
    d.flush()
    assert len(lines) == 4   # nothing held: nothing said


def test_a_new_window_says_what_the_last_one_held_then_lines_again():
    d, clock, lines = digest(limit=1)
    d.add("create", "> create a")
    d.add("create", "> create b")
    clock.now = 1.0
    d.add("update", "> update c")
    assert lines == ["> create a", "> ... and 1 more (1 create; `p2p log` lists them)", "> update c"]


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(["create", "update", "delete"]), st.floats(0, 0.6)), max_size=80),
       limit=st.integers(1, 5))
def test_every_line_is_said_or_counted(steps, limit):
    d, clock, lines = digest(limit=limit)
    for kind, wait in steps:
        clock.now += wait
        d.add(kind, f"> {kind} x")
    d.flush()
    said = sum(1 for line in lines if "more (" not in line)
    counted = sum(int(line.split(" and ")[1].split(" more")[0].replace(",", "")) for line in lines if "more (" in line)
    assert said + counted == len(steps)
    assert said <= limit * (1 + int(sum(w for _, w in steps)))   # at most limit per window of 1 s
