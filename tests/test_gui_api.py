"""The dashboard's API (docs/API.md) against real `p2p run` processes on
loopback: the token is required and a wrong one refused, POSTs check the
Origin, the browser's cookie entry, the folder at a moment, downloads, a
peer's folder, live events, and a restore through the API that becomes a
new event on both peers."""

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from p2p import limits
from peers import free_port, wait_until

pytestmark = pytest.mark.slow


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def request(url, *, method="GET", headers=None, body=None, timeout=30):
    """(status, headers, body bytes) of one HTTP request; never follows redirects."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class Dashboard:
    """One peer's dashboard, reached with its token in the X-P2P-Token header."""

    def __init__(self, peer):
        url = peer.gui_url()
        self.base, _, query = url.partition("?")
        self.token = urllib.parse.parse_qs(query)["token"][0]
        self.origin = self.base.rstrip("/")

    def get(self, route, **params):
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, _, body = request(self.base + route.lstrip("/") + query, headers={"X-P2P-Token": self.token})
        return status, json.loads(body) if body.startswith(b"{") else body

    def post(self, route, body, **headers):
        status, _, raw = request(self.base + route.lstrip("/"), method="POST", body=body,
                                 headers={"X-P2P-Token": self.token, "Origin": self.origin, **headers})
        return status, json.loads(raw)


def p2p(*args):
    return subprocess.run([sys.executable, "-m", "p2p", *args], capture_output=True, text=True, timeout=30)


def events(peer):
    path = peer.home / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_api_needs_the_token_and_posts_need_the_origin(make_peer):
    a = make_peer("a", gui="127.0.0.1:0").start()
    gui = Dashboard(a)
    assert stat.S_IMODE(os.stat(a.home / ".p2p" / "gui.token").st_mode) == 0o600
    assert gui.get("/rest/status")[0] == 200

    for headers in ({}, {"X-P2P-Token": "wrong"}, {"X-P2P-Token": gui.token[:-1]},
                    {"Cookie": "p2p-token-1=" + gui.token}):   # another port's cookie
        for path in ("rest/status", "rest/history", "", "app.js"):
            assert request(gui.base + path, headers=headers)[0] == 403, (path, headers)
    assert request(gui.base + "rest/status?token=wrong")[0] == 403
    status, _, body = request(gui.base + "rest/pause", method="POST", body={})
    assert status == 403 and b"token" in body

    # the URL `p2p gui` prints: the token moves into a cookie, the page is shown without it
    status, headers, _ = request(f"{gui.base}?token={gui.token}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    status, _, page = request(gui.base, headers={"Cookie": cookie})
    assert status == 200 and b"/app.js" in page
    assert request(gui.base + "rest/status", headers={"Cookie": cookie})[0] == 200

    # state-changing requests: the Origin must be this dashboard's
    evil = {"Cookie": cookie, "Origin": "http://evil.example"}
    assert request(gui.base + "rest/pause", method="POST", body={}, headers=evil)[0] == 403
    other_port = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{free_port()}"}
    assert request(gui.base + "rest/pause", method="POST", body={}, headers=other_port)[0] == 403
    no_origin = {"Cookie": cookie}   # a browser always sends one: only a script with the header may omit it
    assert request(gui.base + "rest/pause", method="POST", body={}, headers=no_origin)[0] == 403
    assert json.loads(p2p("status", "--home", str(a.home), "--json").stdout)["user_paused"]["folder"] is False
    status, _, body = request(gui.base + "rest/pause", method="POST", body={},
                              headers={"Cookie": cookie, "Origin": gui.origin})
    assert status == 200 and json.loads(body) == {"folder": True, "peers": []}
    status, _, body = request(gui.base + "rest/resume", method="POST", body={}, headers={"X-P2P-Token": gui.token})
    assert status == 200 and json.loads(body)["folder"] is False
    assert gui.get("/rest/nothing")[0] == 404


def test_restore_through_the_api_is_a_new_event_on_both_peers(make_peer):
    a = make_peer("a", gui="127.0.0.1:0").start()
    b = make_peer("b", peers=[a], gui="127.0.0.1:0").start()
    gui_b = Dashboard(b)
    wait_until(lambda: gui_b.get("/rest/status")[1]["peers"][0]["state"] == "connected", 20, "b connected")
    since = gui_b.get("/rest/status")[1]["feed"]

    a.write("notes/plan.txt", b"version one")
    wait_until(lambda: b.has("notes/plan.txt", b"version one"), 20, "v1 on b")
    first = next(e for e in events(a) if e["path"] == "notes/plan.txt")
    status, news = gui_b.get("/rest/events", since=since, timeout=5)   # what woke b's page
    assert status == 200 and any(item["type"] == "history" for item in news["events"]), news
    a.write("notes/plan.txt", b"version two, longer")
    wait_until(lambda: b.has("notes/plan.txt", b"version two, longer"), 20, "v2 on b")

    # the timeline, newest first, filtered by path; the folder then and now
    status, timeline = gui_b.get("/rest/history", path="notes")
    assert status == 200
    assert [(e["type"], e["path"]) for e in timeline["events"]][:2] == [("update", "notes/plan.txt"),
                                                                         ("create", "notes/plan.txt")]
    assert timeline["events"][0]["peer"] == "a"
    status, then = gui_b.get("/rest/tree", at=first["id"], path="notes")
    assert status == 200 and [(e["name"], e["size"], e["id"]) for e in then["entries"]] == [
        ("plan.txt", len(b"version one"), first["id"])]
    status, now = gui_b.get("/rest/tree", path="notes")
    assert [e["size"] for e in now["entries"]] == [len(b"version two, longer")]
    assert gui_b.get("/rest/tree", at="not a moment")[0] == 400

    # the file as it was, from b's block store
    status, content = gui_b.get("/rest/file", event=first["id"])
    assert status == 200 and content == b"version one"
    assert gui_b.get("/rest/file", event=first["origin"] + ":999")[0] == 404

    # a connected peer's folder, as p2p ls shows it
    status, listing = gui_b.get("/rest/peer/ls", peer="a", path="notes")
    assert status == 200 and [e["name"] for e in listing["entries"]] == [".", "plan.txt"]

    # restore on b: b's watcher records it as a new event, which a receives and writes
    before = len(events(b))
    status, answer = gui_b.post("/rest/restore", {"path": "notes/plan.txt", "at": first["id"]})
    assert status == 200, answer
    assert "restored notes/plan.txt" in answer["summary"]
    assert b.has("notes/plan.txt", b"version one")
    wait_until(lambda: a.has("notes/plan.txt", b"version one"), 20, "the restore on a")
    made = [e for e in events(b)[before:] if e["path"] == "notes/plan.txt"]
    assert len(made) == 1 and made[0]["type"] == "update" and made[0]["hash"] == first["hash"]
    assert made[0]["origin"] == json.loads(p2p("status", "--home", str(b.home), "--json").stdout)["device"]
    wait_until(lambda: any(e["id"] == made[0]["id"] for e in events(a)), 10, "the restore's event on a")

    status, refused = gui_b.post("/rest/restore", {"path": "nothing/here", "at": first["id"]})
    assert status == 409 and "did not exist" in refused["error"]
    assert gui_b.post("/rest/restore", {"path": "../x", "at": first["id"]})[0] == 400


def test_the_default_address_may_be_taken_but_an_asked_one_may_not(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = p2p("run", "--home", str(tmp_path / "x"), "--listen", f"127.0.0.1:{free_port()}",
                  "--discovery", "off", "--gui", f"127.0.0.1:{port}")
        assert out.returncode == 2
        assert f"cannot serve the dashboard on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
    out = p2p("run", "--home", str(tmp_path / "y"), "--discovery", "off", "--gui", "0.0.0.0:9997")
    assert out.returncode == 2 and "loopback address only" in out.stderr

    home = tmp_path / "z"
    env = {k: v for k, v in os.environ.items() if k != "P2P_GUI"}
    with socket.socket() as taken:   # the default port in use (another peer): a warning, and the peer runs
        try:
            taken.bind(("127.0.0.1", limits.DEFAULT_GUI_PORT))
            taken.listen(1)
        except OSError:
            pass   # something else holds it already: the same case
        proc = subprocess.Popen([sys.executable, "-m", "p2p", "run", "--home", str(home), "--listen",
                                 f"127.0.0.1:{free_port()}", "--discovery", "off"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            lines = []
            wait_until(lambda: lines.append(proc.stdout.readline().decode()) or "scanned the folder" in lines[-1],
                       20, "the peer to start")
            assert any("running without the dashboard" in line for line in lines), lines
            assert proc.poll() is None
            gui = p2p("gui", "--home", str(home))
            assert gui.returncode == 1 and "serves no dashboard" in gui.stderr
        finally:
            proc.terminate()
            proc.wait(15)
    off = p2p("gui", "--home", str(tmp_path / "nobody"))
    assert off.returncode == 1 and "no peer is running" in off.stderr
