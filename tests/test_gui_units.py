"""The dashboard's pure parts (p2p/gui): the token and the Origin rule, the
live feed, the rates, the views over a real EventLog, the WSGI application
with a fake backend (no socket), and the pieces they rely on."""

import io
import json
import os
import stat

import pytest
from hypothesis import given, strategies as st

from p2p import limits
from p2p.config import parse_gui
from p2p.gui import access
from p2p.gui.app import App
from p2p.gui.feed import Feed
from p2p.gui.rates import Rates
from p2p.gui.views import ApiError, LogView, completion, conflicts, folder_state, timeline, tree_view
from p2p.history.event import Event
from p2p.history.log import EventLog
from p2p.history.restore import state_at
from p2p.sync.conflicts import conflict_name, conflict_original

A = "A" * 32
B = "B" * 32
HASH = "0" * 64


def event(seq, path, type="create", origin=A, parents=(), time=1000.0, size=3, kind="file", **extra):
    return Event(id=f"{origin}:{seq}", origin=origin, seq=seq, lamport=seq, type=type, kind=kind, path=path,
                 size=0 if type == "delete" or kind != "file" else size, mode=0o644, mtime=seq * 10 ** 9,
                 hash="" if type == "delete" or kind != "file" else HASH,
                 blocks=() if type == "delete" or kind != "file" else ((HASH, size),), parents=tuple(parents),
                 time=time + seq, **extra)


# -- access -------------------------------------------------------------------------
def test_the_token_file_is_private_and_replaced_when_it_is_not(tmp_path):
    (tmp_path / ".p2p").mkdir()
    token = access.load_or_create_token(tmp_path)
    path = tmp_path / ".p2p" / "gui.token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(token) >= 40
    assert access.load_or_create_token(tmp_path) == token == access.read_token(tmp_path)
    os.chmod(path, 0o644)   # others could read it: it may have leaked
    fresh = access.load_or_create_token(tmp_path)
    assert fresh != token and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text("")
    assert access.load_or_create_token(tmp_path) not in ("", fresh)
    assert access.read_token(tmp_path / "elsewhere") is None


def test_where_a_request_carries_its_token():
    assert access.presented({"HTTP_X_P2P_TOKEN": "t"}, 80) == ("t", access.FROM_HEADER)
    assert access.presented({"HTTP_COOKIE": "a=b; p2p-token-80=t"}, 80) == ("t", access.FROM_COOKIE)
    assert access.presented({"HTTP_COOKIE": "p2p-token-81=t"}, 80) == (None, None)   # another peer's
    assert access.presented({"QUERY_STRING": "token=t&x=1"}, 80) == ("t", access.FROM_QUERY)
    assert access.presented({"HTTP_COOKIE": "\x00bad"}, 80) == (None, None)
    assert not access.token_matches(None, "t") and not access.token_matches("u", "t")


def test_the_origin_rule():
    allowed = access.origins("127.0.0.1", 9997)
    assert allowed == {"http://127.0.0.1:9997", "http://localhost:9997"}
    assert access.origins("::1", 5) == {"http://[::1]:5", "http://localhost:5"}
    assert access.origin_refused({"HTTP_ORIGIN": "http://127.0.0.1:9997"}, allowed, access.FROM_COOKIE) is None
    assert access.origin_refused({"HTTP_ORIGIN": "http://evil"}, allowed, access.FROM_HEADER)
    assert access.origin_refused({"HTTP_ORIGIN": "null"}, allowed, access.FROM_COOKIE)
    assert access.origin_refused({}, allowed, access.FROM_COOKIE)
    assert access.origin_refused({}, allowed, access.FROM_QUERY)
    assert access.origin_refused({}, allowed, access.FROM_HEADER) is None


def test_the_dashboard_address_is_loopback_only():
    assert parse_gui(None) == ("127.0.0.1", limits.DEFAULT_GUI_PORT)
    assert parse_gui("off") is None and parse_gui(" OFF ") is None
    assert parse_gui("127.0.0.5:0") == ("127.0.0.5", 0)
    assert parse_gui("8000") == ("127.0.0.1", 8000)
    assert parse_gui("[::1]:8000") == ("::1", 8000)
    assert parse_gui("localhost:1") == ("localhost", 1)
    assert parse_gui(":80") == ("127.0.0.1", 80)
    for bad in ("0.0.0.0:1", "192.168.1.2:80", "example.com:80", "[::]:80"):
        with pytest.raises(ValueError, match="loopback"):
            parse_gui(bad)


# -- the feed and the rates ---------------------------------------------------------------
def test_the_feed_numbers_items_and_says_when_a_page_must_reload():
    woken = []
    feed = Feed(kept=3)
    feed.listen(lambda: woken.append(1))
    assert feed.since(0) == {"events": [], "last": 0, "reset": False}
    for i in range(5):
        feed.publish("history", {"i": i}, now=100.0 + i)
    assert len(woken) == 5 and feed.last == 5
    assert [e["id"] for e in feed.since(2)["events"]] == [3, 4, 5]
    assert feed.since(5)["events"] == [] and not feed.since(5)["reset"]
    assert feed.since(1)["reset"]        # item 2 is no longer kept
    assert feed.since(9)["reset"]        # numbers of an earlier run


def test_rates_are_measured_over_a_window():
    rates = Rates(window=1.0)
    assert rates.sample("p", 0, 0, now=10.0) == (0.0, 0.0)
    assert rates.sample("p", 500, 100, now=10.5) == (0.0, 0.0)     # too soon: the last rate
    assert rates.sample("p", 2000, 1000, now=12.0) == (1000.0, 500.0)
    assert rates.sample("p", 2000, 1000, now=12.2) == (1000.0, 500.0)
    assert rates.sample("p", 10, 10, now=13.5) == (0.0, 0.0)        # a new channel: counters restart
    rates.forget_others(["q"])
    assert rates.sample("p", 99, 99, now=20.0) == (0.0, 0.0)


# -- the views ----------------------------------------------------------------------------
def test_completion_and_folder_state():
    assert completion({}, {}) == 100.0
    assert completion({A: 3, B: 1}, {A: 1, B: 5}) == 50.0
    status = {"folder_state": {"pending": 0, "in_sync": True}, "transfers": [], "not_synced": [], "paused": ""}
    assert folder_state(status, False) == "in sync"
    assert folder_state(status, True) == "paused"
    assert folder_state(dict(status, paused="the marker is missing"), False) == "waiting: the marker is missing"
    busy = dict(status, transfers=[{"bytes": 100, "done": 25}, {"bytes": 100, "done": 75}])
    assert folder_state(busy, False) == "syncing 50%"
    assert folder_state(dict(status, not_synced=[{"path": "x", "reason": "y"}]), False) == "1 not synced"


def log_of(tmp_path, events):
    log = EventLog(tmp_path / "events.jsonl")
    log.append(events, durable=True)
    log.close()
    return EventLog(tmp_path / "events.jsonl", read_only=True)


def test_the_timeline_pages_backwards_and_filters_by_path(tmp_path):
    made = [event(1, "docs/a.txt"), event(2, "b.txt"),
            event(3, "docs/a.txt", type="delete", parents=[f"{A}:1"], moved_to="docs/c.txt"),
            event(4, "docs/c.txt", moved_from="docs/a.txt"), event(5, "b.txt", type="update", parents=[f"{A}:2"])]
    log = log_of(tmp_path, made)
    names = {A: "laptop"}
    page = timeline(log, prefix="", limit=2, before=None, names=names)
    assert [e["id"] for e in page["events"]] == [f"{A}:5", f"{A}:4"]   # a rename is shown once
    assert page["events"][1]["type"] == "rename" and page["events"][1]["from"] == "docs/a.txt"
    assert page["events"][0]["peer"] == "laptop" and page["events"][0]["short"] == "AAAAAAA:5"
    rest = timeline(log, prefix="", limit=10, before=page["next"], names=names)
    assert [e["id"] for e in rest["events"]] == [f"{A}:2", f"{A}:1"] and rest["next"] is None
    docs = timeline(log, prefix="docs", limit=10, before=None, names={})
    assert [e["id"] for e in docs["events"]] == [f"{A}:4", f"{A}:1"] and docs["events"][0]["peer"] == "AAAAAAA"
    with pytest.raises(ApiError):
        timeline(log, prefix="", limit=0, before=None, names={})
    log.close()


def test_the_tree_at_a_moment_lists_one_directory(tmp_path):
    made = [event(1, "docs", kind="dir"), event(2, "docs/a.txt"), event(3, "top.txt"),
            event(4, "docs/a.txt", type="delete", parents=[f"{A}:2"])]
    log = log_of(tmp_path, made)
    view = LogView(log, {A: 4})
    then = tree_view(state_at(view, f"{A}:3"), "docs", f"{A}:3", {A: "laptop"})
    assert [(e["path"], e["id"], e["peer"]) for e in then["entries"]] == [("docs/a.txt", f"{A}:2", "laptop")]
    root = tree_view(state_at(view, f"{A}:4"), "", f"{A}:4", {})
    assert [(e["name"], e["kind"]) for e in root["entries"]] == [("docs", "dir"), ("top.txt", "file")]
    with pytest.raises(ApiError) as gone:
        tree_view(state_at(view, f"{A}:1"), "nothing", f"{A}:1", {})
    assert gone.value.status == 404
    with pytest.raises(ApiError) as not_dir:
        tree_view(state_at(view, f"{A}:3"), "top.txt", f"{A}:3", {})
    assert not_dir.value.status == 400
    log.close()


def test_conflict_copies_are_listed_with_the_version_they_were_kept_beside():
    loser = event(2, "a.txt", origin=B)
    copy = conflict_name("a.txt", loser)
    tree = {"a.txt": event(1, "a.txt"), copy: event(3, copy), "plain.sync-conflict-x": event(4, "plain.sync-conflict-x")}
    listed = conflicts(tree, {})["conflicts"]
    assert [(c["of"], c["copy"]["path"], c["current"]["id"]) for c in listed] == [("a.txt", copy, f"{A}:1")]


@given(st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_a_conflict_name_leads_back_to_its_original(name):
    copy = conflict_name(f"dir/{name}", event(1, "x"))
    original = conflict_original(copy)
    assert original is not None and original.startswith("dir/")
    if len(name.encode()) < 150:   # not clipped to fit the longest name
        assert original == f"dir/{name}"
    assert conflict_original(f"dir/{name}") is None or ".sync-conflict-" in name


# -- the WSGI application ----------------------------------------------------------------
class Backend:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def answer(*args):
            self.calls.append((name, args))
            if name == "restore" and args[0] == "missing":
                raise ApiError(409, "missing did not exist")
            if name == "file":
                return "a b.txt", 3, [b"abc"]
            if name == "qr_svg":
                return b"<svg/>"
            return {"called": name}
        return answer


def call(app, path, method="GET", query="", headers=None, body=None):
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO(raw),
               "CONTENT_LENGTH": str(len(raw)) if raw else "", **(headers or {})}
    seen = {}

    def start_response(status, response_headers):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(response_headers)

    out = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], out


TOKEN = {"HTTP_X_P2P_TOKEN": "secret"}


def test_the_application_refuses_without_the_token_and_routes_with_it():
    backend = Backend()
    app = App(backend, "secret", "127.0.0.1", 9997)
    assert call(app, "/rest/status")[0] == 403
    assert call(app, "/")[0] == 403 and call(app, "/app.js")[0] == 403
    assert call(app, "/rest/status", headers={"HTTP_X_P2P_TOKEN": "nope"})[0] == 403
    assert backend.calls == []
    status, headers, body = call(app, "/rest/status", headers=TOKEN)
    assert status == 200 and json.loads(body) == {"called": "status"}
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = call(app, "/", headers=TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"app.js" in body
    status, headers, _ = call(app, "/", query="token=secret")
    assert status == 303 and headers["Set-Cookie"].startswith("p2p-token-9997=secret;")
    call(app, "/rest/history", query="path=docs/&limit=5&before=10", headers=TOKEN)
    call(app, "/rest/tree", query="path=/x/y", headers=TOKEN)
    call(app, "/rest/events", query="since=4&timeout=999", headers=TOKEN)
    assert backend.calls[-3:] == [("history", ("docs", 5, 10)), ("tree", ("now", "x/y")),
                                  ("events", (4, limits.GUI_LONG_POLL))]
    status, headers, body = call(app, "/rest/file", query="event=x", headers=TOKEN)
    assert status == 200 and body == b"abc" and "filename*=UTF-8''a%20b.txt" in headers["Content-Disposition"]
    assert call(app, "/rest/device/qr.svg", headers=TOKEN)[1]["Content-Type"] == "image/svg+xml"


def test_the_application_checks_parameters_origin_and_bodies():
    backend = Backend()
    app = App(backend, "secret", "127.0.0.1", 9997)
    for path, query in (("/rest/history", "limit=x"), ("/rest/history", "path=../up"), ("/rest/peer/ls", ""),
                        ("/rest/events", "timeout=-1"), ("/rest/file", "")):
        assert call(app, path, query=query, headers=TOKEN)[0] == 400, (path, query)
    assert call(app, "/rest/nothing", headers=TOKEN)[0] == 404
    assert call(app, "/rest/restore", headers=TOKEN)[0] == 405
    assert call(app, "/rest/status", method="POST", headers=TOKEN)[0] == 405
    assert call(app, "/rest/status", method="DELETE", headers=TOKEN)[0] == 405
    cookie = {"HTTP_COOKIE": "p2p-token-9997=secret"}
    assert call(app, "/rest/pause", method="POST", headers=cookie, body={})[0] == 403
    assert call(app, "/rest/pause", method="POST", headers=dict(cookie, HTTP_ORIGIN="http://x"), body={})[0] == 403
    own = dict(cookie, HTTP_ORIGIN="http://localhost:9997")
    assert call(app, "/rest/pause", method="POST", headers=own, body={"peer": "b"})[0] == 200
    assert backend.calls[-1] == ("pause", ("b",))
    status, _, body = call(app, "/rest/restore", method="POST", headers=own, body={"path": "missing", "at": "x"})
    assert status == 409 and json.loads(body) == {"error": "missing did not exist"}
    assert call(app, "/rest/restore", method="POST", headers=own, body={"path": 5})[0] == 400
    assert call(app, "/rest/restore", method="POST", headers=own, body=[1])[0] == 400
    huge = dict(own, CONTENT_LENGTH=str(limits.GUI_MAX_BODY + 1))
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/rest/pause", "wsgi.input": io.BytesIO(b""), **huge}
    statuses = []
    app(environ, lambda status, headers: statuses.append(status))
    assert statuses[0].startswith("413")


def test_a_bug_in_a_route_is_a_500_with_the_reason():
    class Broken(Backend):
        def status(self):
            raise RuntimeError("boom")

    status, _, body = call(App(Broken(), "secret", "127.0.0.1", 1), "/rest/status", headers=TOKEN)
    assert status == 500 and "boom" in json.loads(body)["error"]
