"""The dashboard's server inside the running node: gevent's own WSGI server
(``gevent.pywsgi``) on the loopback address of ``--gui``, serving
``p2p.gui.app.App``, and the backend that answers its routes from the node.

Cheap answers are read in the hub (the status, the live tree, one event);
whatever reads the log or the disk runs in the node's thread pool: the
timeline and the folder at a moment read ``events.jsonl`` through their own
read-only ``EventLog`` (the node's ``History`` is only touched in the hub),
a restore is ``p2p restore``'s own ``restore_in_place``, a download reads
the block store. Live updates are long polls on the node's ``Feed``.
The server's greenlet is started through ``Node.spawn`` (supervised, killed
on stop); each request runs in a greenlet of the server.
"""

from __future__ import annotations

import io
import logging
import math
import time

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from p2p import limits
from p2p.blocks.store import BlockMissing, CorruptBlock
from p2p.config import LAN
from p2p.gui import views
from p2p.gui.access import load_or_create_token
from p2p.gui.app import App
from p2p.gui.rates import Rates
from p2p.gui.views import ApiError, LogView
from p2p.history.event import InvalidEvent
from p2p.history.log import EventLog
from p2p.security.identity import format_device_id
from p2p.logs import say

log = logging.getLogger("p2p.gui")


class GuiServer:
    def __init__(self, node):
        self.node = node
        self.host, port = node.config.gui
        self.port = port
        self.server = None
        self.rates = Rates()
        self._changed = Event()
        self._store_bytes = (0, -math.inf)     # (bytes, when measured)
        self._qr = (None, b"")                 # (device id, its SVG)
        node.feed.listen(self._wake)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Bind now (an OSError says why it cannot), then serve in a supervised greenlet."""
        token = load_or_create_token(self.node.home)
        self.server = WSGIServer((self.host, self.port), None, log=None, error_log=log)
        try:
            self.server.init_socket()
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve the dashboard on {self.host}:{self.port}: "
                                     f"{exc.strerror or exc}") from exc
        self.port = self.server.server_port
        self.server.application = App(self, token, self.host, self.port)
        self.node.spawn(self.server.serve_forever)

    def _wake(self) -> None:
        changed, self._changed = self._changed, Event()
        changed.set()

    # -- what the routes read ----------------------------------------------------------
    def _names(self) -> dict:
        names = {p.device_id: p.name for p in self.node.registry.peers.values() if p.name}
        names[self.node.device_id] = self.node.name
        return names

    def _log_view(self):
        """A read-only log of the history, and our version vector now (copied in the hub)."""
        return EventLog(self.node.home / "events.jsonl", read_only=True), self.node.history.vv

    def _in_pool(self, fn, *args):
        return self.node.threadpool.apply(fn, args)

    def status(self) -> dict:
        node = self.node
        vv = node.history.vv
        extras = {p.device_id: {"completion": views.completion(vv, p.session.peer_vv) if p.session else None,
                                "last_error": p.last_error.reason if p.last_error else ""}
                  for p in node.registry.peers.values()}
        discovery = node.config.discovery
        shown = "off" if discovery is None else "LAN broadcast" if discovery == LAN else "%s:%d" % discovery
        return views.status_view(node.status(), discovery=shown, gui=self.url, peers=extras, rates=self.rates,
                                 store_bytes=self._store_size(), user_paused=node.pauses.listing(),
                                 feed_last=node.feed.last)

    def _store_size(self) -> int:
        size, when = self._store_bytes
        if time.monotonic() - when >= limits.GUI_STORE_SIZE_EVERY:
            self._store_bytes = (size, time.monotonic())   # one walk at a time
            self._store_bytes = (self._in_pool(self.node.store.total_bytes), time.monotonic())
        return self._store_bytes[0]

    def events(self, since: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.node.feed.since(since)
            remaining = deadline - time.monotonic()
            if answer["events"] or answer["reset"] or remaining <= 0:
                return answer
            self._changed.wait(remaining)

    def history(self, path: str, limit: int, before) -> dict:
        event_log, _ = self._log_view()
        names = self._names()
        try:
            return self._in_pool(lambda: views.timeline(event_log, prefix=path, limit=limit, before=before,
                                                        names=names))
        finally:
            event_log.close()

    def tree(self, at: str, path: str) -> dict:
        if at == "now":
            return views.tree_view(self.node.history.tree(), path, at, self._names())
        state = self._at(at)
        return views.tree_view(state, path, at, self._names())

    def _at(self, at: str):
        event_log, vv = self._log_view()
        try:
            return self._in_pool(views.state_of_moment, LogView(event_log, vv), at)
        finally:
            event_log.close()

    def conflicts(self) -> dict:
        return views.conflicts(self.node.history.tree(), self._names())

    def restore(self, path: str, at: str) -> dict:
        event_log, vv = self._log_view()
        try:
            answer = self._in_pool(views.restore, LogView(event_log, vv), self.node.store, self.node.root, path, at)
        finally:
            event_log.close()
        say(f"restored from the dashboard: {answer['summary']}")
        return answer

    def file(self, event_id: str):
        """(name, size, chunks) of a file's content as of one of its events, from the block store."""
        try:
            event = self.node.history.get(event_id)
        except InvalidEvent as exc:
            raise ApiError(400, str(exc)) from None
        if event is None:
            raise ApiError(404, f"no event {event_id} in the history")
        if event.kind != "file" or event.is_delete:
            raise ApiError(400, f"event {event_id} is a {event.type} of a {event.kind}, not a file's content")
        current = self.node.history.current(event.path)
        if (current is None or current.id != event.id) and self._in_pool(self.node.store.missing, event.blocks):
            raise ApiError(410, f"the content of {event.path} as of {event_id} was pruned from the block store")
        return views.download_name(event), event.size, self._chunks(event)

    def _chunks(self, event):
        for block_hash, _size in event.blocks:
            try:
                yield self._in_pool(self.node._read_block, block_hash)
            except (BlockMissing, CorruptBlock, OSError) as exc:   # headers are sent: cut the download short
                log.warning("download of %s stopped: %s", event.path, exc)
                return

    def ls(self, peer: str, path: str) -> dict:
        info = self.node.registry.find(peer)
        if info is None or info.session is None:
            raise ApiError(404, f"no connected peer matches {peer!r}")
        try:
            entries = info.session.list_remote(path)
        except gevent.Timeout:
            raise ApiError(504, f"{info.name or info.device_id[:7]} did not answer in time") from None
        except Exception as exc:   # the session closed meanwhile
            raise ApiError(503, f"cannot list {info.name or info.device_id[:7]}'s folder: {exc}") from None
        return {"peer": info.device_id, "name": info.name, "path": path, "entries": list(entries)}

    def qr_svg(self) -> bytes:
        import segno   # only when a page asks for it

        device_id = self.node.device_id
        if self._qr[0] != device_id:
            out = io.BytesIO()
            segno.make(format_device_id(device_id), error="m").save(out, kind="svg", scale=4, border=2)
            self._qr = (device_id, out.getvalue())
        return self._qr[1]

    def pause(self, peer: str) -> dict:
        return self._pausing(self.node.pause, peer)

    def resume(self, peer: str) -> dict:
        return self._pausing(self.node.resume, peer)

    @staticmethod
    def _pausing(action, peer: str) -> dict:
        try:
            return action(peer)
        except ValueError as exc:
            raise ApiError(404, str(exc)) from None
