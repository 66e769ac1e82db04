"""A running peer: wires the history, the block store, the folder, the watcher
and the network together inside one gevent hub.

Greenlets, each owned here and killed on stop:
- the listener (one greenlet per inbound connection: handshake, then the
  session's reader) and one dialer per known address (reconnect with backoff);
- discovery (announce and listen), if enabled;
- the broadcaster: new events (local, or accepted from one peer) to every
  other ready peer, deduplicated by what each peer is known to have;
- the local loop (``LocalChanges``): coalesced paths from the watcher are
  scanned (hashing in the thread pool) and become events;
- the reconciler (``Reconciler``): paths whose winning version differs from
  the disk are written, deleted or fetched (``Fetcher``);
- housekeeping: group-commit fsync of the log, saving the local state;
- the periodic rescan of the whole folder (``config.rescan_interval``).
All history mutations happen in the hub, through the single ``EventLog``.

A home disk that refuses a history write holds the peer (``DiskGuard``); a
failed fsync of the log stops it with a non-zero exit (``history_broken``).
The device id never issues a seq twice: a copied home or a log that lost our
events (at start), or a peer that holds more of our events than our log (on
connect), makes the node take a new device id (``retire_identity``).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
import weakref
from pathlib import Path
from typing import Optional

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.queue import Queue
from gevent.server import StreamServer
from gevent.threadpool import ThreadPool

from p2p import limits
from p2p.config import LAN, Config
from p2p.blocks.store import BlockMissing, BlockStore
from p2p.folder.apply import FolderWriter
from p2p.folder.archive import PendingArchive
from p2p.folder.marker import ADOPT_SAMPLE, MARKER, FolderUnavailable, prepare as prepare_folder
from p2p.folder.marker import present as folder_marker_present
from p2p.folder.partials import Partials
from p2p.folder.scan import Scanner
from p2p.folder.state import LocalState
from p2p.folder.unsynced import Unsynced
from p2p.gui.feed import Feed
from p2p.history.event import InvalidEvent
from p2p.history.history import History
from p2p.history.log import EventLog, LogBroken, LogWriteFailed
from p2p.history.restore import listing
from p2p.history.retention import default_bound, replaced_since
from p2p.logs import say
from p2p.net.announce import Announce
from p2p.net.control import ControlServer
from p2p.net.disk_guard import DiskGuard
from p2p.net.discovery import Discovery
from p2p.net.fetcher import WAITING, Fetcher
from p2p.net.local_changes import LocalChanges
from p2p.net.pause import Pauses
from p2p.net.peers import Failure, PeerRegistry
from p2p.net.reconciler import Reconciler
from p2p.net.session import Session
from p2p.net.supervisor import Supervisor
from p2p.security.handshake import perform_handshake
from p2p.security.identity import Identity, format_device_id, home_copied, record_home
from p2p.security.membership import load_secret, load_trusted, mode_description
from p2p.security.private import make_home_private
from p2p.sync.ignore import IgnoreRules
from p2p.transport import TcpChannel
from p2p.units import human_size
from p2p.verdict import describe_paused, what_is_missing
from p2p.watch.watcher import FolderWatcher
from p2p.wire.messages import Have, Neighbors, Summary

log = logging.getLogger("p2p.node")

PROGRESS_MIN_BYTES = 16 * limits.MiB


class CannotListen(OSError):
    """The listen address cannot be bound (in use, not ours, privileged)."""


class Node:
    def __init__(self, config: Config):
        self.config = config
        self.home = Path(config.home)
        self.root = Path(config.root)
        tightened = make_home_private(self.home)   # .p2p 0700, its files and events.jsonl 0600
        if tightened:
            log.info("made %d entries of the home %s private (0700/0600)", tightened, self.home)
        self.identity = Identity.load_or_create(self.home)
        self.device_id = self.identity.device_id
        self.name = config.name
        self.secret = load_secret(config.secret_file, config.secret_env)
        self.trusted = load_trusted(self.home)
        self.history = History.open(self.home, self.device_id)
        self.state = LocalState(self.home / ".p2p" / "local.db")
        if self.state.fresh and len(self.history):   # (a new home starts empty: nothing to say)
            log.warning("%s: the start-up scan rebuilds the local state from the folder and events.jsonl",
                        self.state.fresh)
        try:
            prepare_folder(self.root, self.home, len(self.history), self.state.paths(ADOPT_SAMPLE))
        except FolderUnavailable:
            self.history.close()
            self.state.close()
            raise
        self.store = BlockStore(self.home / ".p2p" / "blocks")
        self.discovery = None
        self.registry = PeerRegistry()
        self._check_device_id()                                # before the state forgets lost events
        settled = self.state.settle(self.root)                 # replaces a crash interrupted
        doubtful = self.state.forget_unknown(self.history.vv)  # versions the log lost: rehash
        if settled or doubtful:
            log.info("local state: %d interrupted writes settled, %d entries to rehash", settled, doubtful)
        self.ignore = IgnoreRules(self.root)
        self.scanner = Scanner(self.root, self.state, self.store, self.ignore.matches)
        self.writer = FolderWriter(self.root, self.state, self.store)
        self.partials = Partials(self.home / ".p2p" / "partials.json")
        self.unsynced = Unsynced()        # paths skipped, with their reasons (p2p status)
        self.archive = PendingArchive(self.root, self.store, self.state)   # large current files not stored yet
        self.threadpool = gevent.get_hub().threadpool   # short file-system work
        self.bulkpool = ThreadPool(limits.BULK_THREADS)  # large buffers: never delays the short work
        self.fetcher = Fetcher(root=self.root, state=self.state, store=self.store, archive=self.archive,
                               writer=self.writer, partials=self.partials, unsynced=self.unsynced,
                               bulkpool=self.bulkpool, registry=self.registry)
        self.supervisor = Supervisor(self.fail)
        self.exit_code = 0
        self.disk = DiskGuard(            # holds the peer while the home disk refuses history writes
            home=self.home, threadpool=self.threadpool, spawn=self.spawn, take_held_events=self.take_held_events,
            rescan=lambda paths: self.local_changes.rescan(paths), ask_peers=self._send_summaries)
        self.broadcast_q: Queue = Queue()
        self.stopped = Event()
        self.scanned = Event()          # the start-up scan is done
        self.folder_ready = Event()     # the folder and its marker are there (cleared: paused)
        self.folder_ready.set()
        self.pauses = Pauses(self.home / ".p2p" / "paused.json")   # what the user paused (p2p pause, the dashboard)
        self.local_changes = LocalChanges(
            root=self.root, history=self.history, state=self.state, scanner=self.scanner, ignore=self.ignore,
            unsynced=self.unsynced, disk=self.disk, threadpool=self.threadpool, gates=(self.scanned, self.pauses),
            folder_present=self.folder_present, folder_missing=self.folder_missing, publish=self.publish,
            broken=self.history_broken, spawn=self.spawn,
            watch=lambda directory, recursive: self.watcher.watch(directory, recursive))
        self.reconciler = Reconciler(
            root=self.root, history=self.history, state=self.state, store=self.store, archive=self.archive,
            writer=self.writer, unsynced=self.unsynced, fetcher=self.fetcher, rescan=self.local_changes.rescan,
            pools=(self.threadpool, self.bulkpool), gates=(self.scanned, self.folder_ready, self.pauses.folder_resumed),
            ignored=self.ignore.matches, quiet=self._transfers_quiet, label=self.peer_label, spawn=self.spawn)
        self.local_changes.reconciler = self.fetcher.reconciler = self.reconciler
        self.recent: list = []          # the last events, for `p2p status`
        self.listen_port = config.listen[1]
        self.server = None
        self.watcher = None
        self.control = None
        self._dialing: dict = {}        # address -> dialer greenlet
        self._inbound_per_host: dict = {}
        self.last_served = 0.0          # when a block was last read for a peer
        self._store_after_prune = 0     # the store's size after the last prune (what must be kept may exceed the bound)
        self._greeted = weakref.WeakSet()   # sessions whose "+ peer" line was said
        self._have_sent = weakref.WeakKeyDictionary()   # session -> the last Have it was sent
        self._lacks_cache: dict = {}    # device id -> ((its vv, our event count), what it lacks)
        self.feed = Feed()              # numbered notifications for the dashboard's live pages
        self.gui = None                 # the dashboard's server (p2p/net/gui.py), when served

    # -- start and stop --------------------------------------------------------
    def start(self) -> None:
        host, port = self.config.listen
        self.server = StreamServer((host, port), self._handle_inbound, spawn=Pool(limits.MAX_CONNECTIONS))
        try:
            self.server.init_socket()
        except OSError as exc:
            raise CannotListen(exc.errno, exc.strerror) from exc
        self.server.start()
        self.listen_port = self.server.server_port
        say(f"p2p device {format_device_id(self.device_id)} ({self.name})")
        say(f"folder {self.root}  history {self.home / 'events.jsonl'} ({len(self.history)} events, "
            f"{self.history.replayed} read from it at start)")
        say(f"listening on {host}:{self.listen_port}")
        mode = mode_description(self.secret, self.trusted)
        if mode.startswith("WARNING: "):
            say(mode[len("WARNING: "):], logging.WARNING)
        else:
            say(mode)
        if self.pauses.folder or self.pauses.peers:
            say(f"{describe_paused(self.pauses.listing())}, as the user left it: `p2p resume` to go on",
                logging.WARNING)
        self.watcher = FolderWatcher(self.root, self.local_changes.coalescer, walk=False)   # the start-up
        self.watcher.start()                                                             # scan watches the rest
        self.control = ControlServer(self)
        self.control.start()
        if self.config.gui is not None:
            self._start_gui()
        # a crashed loop may have dropped the batch it held: it restarts after
        # looking at the whole folder again (rare, and said once in the log)
        self.spawn(self.local_changes.run, recover=lambda: self.local_changes.rescan([""]))
        self.spawn(self.reconciler.run, recover=lambda: self.reconciler.mark_dirty(list(self.history.paths())))
        for target in (self.local_changes.coalescer.run, self._broadcast_loop, self.reconciler.small_commits.run,
                       self._housekeeping_loop, self._progress_loop, self._folder_check_loop):
            self.spawn(target)
        self.spawn(self._rescan_loop)
        self.scanner.keep_temporaries = frozenset(self.partials.to_keep(self._wanted_id))
        self.local_changes.rescan([""])  # the start-up scan: the whole folder
        self.spawn(self._mark_differing)  # (once the start-up scan is done)
        for address in self.config.peers:
            self._dial(address, static=True)
        if self.config.discovery is not None:
            self._start_discovery()

    def _mark_differing(self) -> None:
        """Mark for the reconciler what the history and the local state disagree
        on at start (what may need a write), once the start-up scan is done:
        the reconciler waits for the scan anyway. Run beside the scan's
        listing (on the hub, in one go), its read of every head and entry
        slowed the listing more than it took: each is one small system call
        or SQLite step per path, and the two threads handed the GIL to each
        other at every one (a restart over 100,000 files: 3.2 s to "scanned
        the folder" and 3.6 s of CPU beside it, 2.3 s and 2.3 s after it)."""
        self.scanned.wait()
        differing = set(self.history.differing(self.state.recorded()))
        log.debug("%d paths of the history differ from the local state at start", len(differing))
        self.reconciler.mark_dirty(differing)

    def _start_gui(self) -> None:
        """Serve the dashboard. The default address may be taken (another peer on
        this machine): then a warning, and the peer runs without it; an address
        the user asked for that cannot be served stops the start."""
        from p2p.net.gui import GuiServer   # (0.1 s of imports a peer with --gui off never needs)

        gui = GuiServer(self)
        try:
            gui.start()
        except OSError as exc:
            if self.config.gui_required:
                raise
            log.warning("%s: running without the dashboard (choose one with --gui HOST:PORT, or --gui off)",
                        exc.strerror)
            return
        self.gui = gui
        say(f"dashboard on {gui.url} (`p2p gui` prints it with its access token)")

    def gui_address(self) -> dict:
        """Where the dashboard is served (for `p2p gui`)."""
        if self.gui is None:
            why = "it is off (--gui off)" if self.config.gui is None else "its address could not be served"
            return {"error": f"this peer serves no dashboard: {why}"}
        return {"url": self.gui.url}

    # -- pausing (p2p pause / resume, the dashboard) ----------------------------
    def pause(self, peer: str = "") -> dict:
        """Pause the whole folder (no ``peer``) or the exchange with one peer
        (``p2p.net.pause``); ValueError if no known peer matches. What is paused now."""
        if not peer:
            if self.pauses.pause_folder():
                say("paused by the user: no local change is recorded and nothing is written to the "
                    "folder until `p2p resume`")
        else:
            info = self._known_peer(peer)
            if self.pauses.pause_peer(info.device_id):
                say(f"paused by the user: no exchange with peer {info.device_id[:7]} until "
                    f"`p2p resume {info.device_id[:7]}`")
                for session in [s for s in (info.session, *info.standby) if s is not None]:
                    session.close("paused by the user of that peer")
        return self._paused_now()

    def resume(self, peer: str = "") -> dict:
        """Undo ``pause``: the folder is rescanned and brought to the winners; a
        peer is dialled again at once (when we know its address)."""
        if not peer:
            if self.pauses.resume_folder():
                say("resumed by the user: syncing the folder again")
                self.local_changes.rescan([""])   # what changed while paused
        else:
            info = self.registry.find(peer)
            device_id = info.device_id if info is not None else self.pauses.paused_peer(peer)
            if device_id is None:
                raise ValueError(f"no known peer matches {peer!r}")
            if self.pauses.resume_peer(device_id):
                say(f"resumed by the user: exchanging with peer {device_id[:7]} again")
                if info is not None:   # else it connects again after its own back-off
                    self._redial(info.address)
        return self._paused_now()

    def _known_peer(self, text: str):
        info = self.registry.find(text)
        if info is None:
            raise ValueError(f"no known peer matches {text!r}")
        return info

    def _paused_now(self) -> dict:
        paused = self.pauses.listing()
        self.feed.publish("paused", paused, time.time())
        return paused

    def _redial(self, address) -> None:
        """Dial ``address`` now instead of after its dialer's back-off."""
        if address is None or self._address_connected(address):
            return
        current = self._dialing.get(address)
        if current is not None:
            current.kill(block=True, timeout=1)
        self._dial(address, static=address in self.config.peers)

    def _start_discovery(self) -> None:
        target = None if self.config.discovery == LAN else self.config.discovery[0]
        self.discovery = Discovery(Announce(self.device_id, self.listen_port, self.name),
                                   self.config.discovery_port, target, self.config.listen[0], self._discovered,
                                   on_tick=self._forget_stale_peers)
        self.spawn(self.discovery.listen_loop)
        self.spawn(self.discovery.announce_loop)
        where = "LAN broadcast " + ", ".join(self.discovery.targets()) if target is None else target
        say(f"discovery on {where} port {self.config.discovery_port}")

    def _wanted_id(self, path: str):
        current = self.history.current(path)
        return current.id if current is not None else None

    def spawn(self, fn, *args, recover=None):
        """A greenlet owned by the node: supervised (logged once and restarted,
        after ``recover()`` if given, or fatal), killed on stop."""
        return self.supervisor.spawn(fn, *args, recover=recover)

    def fail(self, reason: str) -> None:
        """A component cannot go on: stop the peer, exit code 1."""
        self.exit_code = 1
        say(f"stopping: {reason}", logging.ERROR)
        gevent.spawn(self.stop)

    def serve_forever(self) -> None:
        self.stopped.wait()

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        for session in self.registry.sessions():
            session.close("peer shutting down")
        if self.watcher:
            self.watcher.stop()
        if self.server:
            self.server.stop(timeout=1)
        if self.control:
            self.control.stop()
        self.supervisor.kill(timeout=2)
        self.fetcher.pool.kill(block=True, timeout=2)
        if self.discovery:
            self.discovery.close()
        try:
            self.history.close()
            self.state.close()
            self.store.close()
        except OSError as exc:   # a failed fsync, or a full disk: what is not saved is rescanned at start
            log.error("stopping without saving everything: %s", exc)
            self.exit_code = self.exit_code or 1
        finally:
            self.stopped.set()

    def peer_label(self, device_id: str) -> str:
        """A device as activity lines name it: ``name (SHORTID)``; this peer's
        own id is marked as such."""
        if device_id == self.device_id:
            return f"{self.name} ({device_id[:7]}, this peer)"
        info = self.registry.peers.get(device_id)
        return f"{info.name} ({device_id[:7]})" if info is not None and info.name else device_id[:7]

    # -- the folder itself -----------------------------------------------------
    def folder_present(self) -> bool:
        return folder_marker_present(self.root)

    def folder_missing(self) -> None:
        """The folder or its marker vanished while running (moved, unmounted):
        pause local changes and writes until it is back, so nothing turns into deletes."""
        if not self.folder_ready.is_set():
            return
        self.folder_ready.clear()
        log.error("%s is gone or lost its %s marker (moved or unmounted?): syncing paused until it is back",
                  self.root, MARKER)
        self.spawn(self._await_folder)

    def _folder_check_loop(self) -> None:
        """The watcher may say nothing when the folder itself is moved or
        unmounted: look for the marker now and then (one stat)."""
        while True:
            gevent.sleep(limits.FOLDER_CHECK_INTERVAL)
            if self.folder_ready.is_set() and not self.folder_present():
                self.folder_missing()

    def _await_folder(self) -> None:
        while not self.folder_present():
            gevent.sleep(limits.FOLDER_CHECK_INTERVAL)
        if self.watcher:   # the old watches went with the old directory
            self.watcher.stop()
        self.watcher = FolderWatcher(self.root, self.local_changes.coalescer)
        self.watcher.start()
        self.folder_ready.set()
        say(f"folder {self.root} is back: resuming")
        self.local_changes.rescan([""])

    # -- connections -----------------------------------------------------------
    def _handle_inbound(self, sock, address) -> None:
        host = address[0]
        count = self._inbound_per_host.get(host, 0)
        if count >= limits.MAX_CONNECTIONS_PER_ADDRESS:
            sock.close()
            return
        self._inbound_per_host[host] = count + 1
        try:
            self._run_channel(sock, address, "responder")
        finally:
            self._inbound_per_host[host] -= 1
            if not self._inbound_per_host[host]:
                del self._inbound_per_host[host]

    def _run_channel(self, sock, address, role: str) -> bool:
        """Handshake, then run the session in this greenlet. True if it ran."""
        tcp = TcpChannel(sock, limits.HANDSHAKE_MAX_FRAME)
        try:
            with gevent.Timeout(limits.HANDSHAKE_TIMEOUT):
                result = perform_handshake(tcp, role, self.identity, self.secret, self.trusted,
                                           offload=self._offload)
        except (Exception, gevent.Timeout) as exc:  # any failure drops only this connection
            log.info("handshake with %s:%s failed: %s: %s", address[0], address[1], type(exc).__name__, exc)
            tcp.close()
            reason = handshake_failure(exc)
            if role == "initiator":
                self.registry.failed(reason, time.time(), dialled=address)
            else:
                self.registry.failed(reason, time.time(), host=address[0])
            return False
        tcp.max_frame = result.channel.max_frame = limits.MAX_FRAME  # authenticated: full-size frames
        peer_id = result.peer_id
        initiator = self.device_id if role == "initiator" else peer_id
        session = Session(self, self.history, result.channel, peer_id, address, initiator)
        if self.pauses.holds(peer_id):   # paused by the user: say so to the peer, and hang up
            session.close("paused by the user of that peer")
            return False
        if role == "initiator":
            self.registry.reached(address, peer_id)
        closing = self.registry.attach(peer_id, session, time.time(), self.device_id)
        if session in closing:
            session.close("duplicate channel")
            return True
        for old in closing:  # see peers.resolve: both ends close the same channels
            old.close("replaced by a newer channel" if old.initiator_id == initiator else "duplicate channel")
        info = self.registry.get(peer_id)
        if role == "initiator":
            info.address = address
        self._neighbors_changed(lost=False)
        self.reconciler.mark_dirty(self.fetcher.take_unavailable())
        self._have_sent[session] = (self.history.vv, (0, 0), 0.0)   # what the Summary it sends now says
        session.run()
        return True

    def _offload(self, fn):
        """Run CPU-heavy work on a large buffer in the thread pool, off the hub."""
        return self.bulkpool.apply(fn)

    def digest(self, data) -> bytes:
        """sha256 of a received block; a large one is hashed off the hub."""
        if len(data) > limits.SMALL_BLOCK:
            return self.bulkpool.apply(hashlib.sha256, (data,)).digest()
        return hashlib.sha256(data).digest()

    def session_ended(self, session: Session) -> None:
        for line in session.rejections.unsaid():
            log.warning("rejected events from %s: %s", session.peer_id[:7], line)
        dropped = self.history.drop_pending(session)
        if dropped:
            log.info("dropped %d events from %s that waited for predecessors it never sent",
                     dropped, session.peer_id[:7])
        known = self.registry.peers.get(session.peer_id)
        if known is not None and session.ended_by:
            known.last_error = Failure(session.ended_by, time.time())
        if self.registry.detach(session.peer_id, session):
            say(f"- peer {self.peer_label(session.peer_id)} disconnected")
            self._neighbors_changed(lost=True)

    def neighbor_ids(self):
        return tuple(p.device_id for p in self.registry.connected())

    def _neighbors_changed(self, lost: bool) -> None:
        """Tell every peer whom we are connected to. After losing a channel,
        also ask the others for what it would have brought us."""
        ids = self.neighbor_ids()
        self.feed.publish("peers", {"connected": list(ids)}, time.time())
        for session in self.registry.sessions():
            session.send(Neighbors(ids=ids))
        if lost:
            self._send_summaries()

    def _send_summaries(self) -> None:
        """Send every peer our version vector: each answers with the events we lack."""
        for session in self.registry.sessions():
            session.send(Summary(vv=self.history.vv))

    def peer_seen(self, session: Session) -> None:
        info = self.registry.peers.get(session.peer_id)
        if info is not None:
            info.last_seen = time.time()

    def peer_hello(self, session: Session) -> None:
        """The peer said who it is: the channel is announced (once), by name."""
        info = self.registry.get(session.peer_id)
        info.name = session.name
        if session not in self._greeted and not session.closed.is_set():
            self._greeted.add(session)
            host, port = session.address[0], session.listen_port or session.address[1]
            say(f"+ peer {self.peer_label(session.peer_id)} at {host}:{port} connected")

    def _discovered(self, announce: Announce, host: str) -> bool:
        address = (host, announce.port)
        info, new = self.registry.heard(announce.device_id, announce.name, address, time.time())
        if info is not None and info.session is None and self.device_id < announce.device_id:
            self._dial(address, static=False)  # the smaller id dials; the other waits
        return new

    def _forget_stale_peers(self) -> None:
        """Peers announced once and never connected go after limits.PEER_EXPIRY."""
        self.registry.expire(time.time())

    def _dial(self, address, static: bool) -> None:
        current = self._dialing.get(address)
        if current is not None and not current.dead:
            return
        greenlet = self._dialing[address] = self.spawn(self._dial_loop, address, static)
        greenlet.link(lambda g: self._dialing.pop(address) if self._dialing.get(address) is g else None)

    def _dial_loop(self, address, static: bool) -> None:
        delay = limits.RECONNECT_MIN
        while not self.stopped.is_set():
            if not static and self._address_connected(address):
                return
            if not self.registry.may_dial(address, static, time.monotonic()):
                log.debug("not dialling %s:%s now (peer connected, or its host's dial budget spent)", *address)
            else:
                try:
                    sock = socket.create_connection(address, timeout=5, source_address=self._dial_source())
                    sock.settimeout(None)
                except OSError as exc:
                    log.debug("dial %s:%s failed: %s", address[0], address[1], exc)
                    self.registry.failed(_lowercase(exc.strerror or str(exc)), time.time(), dialled=address)
                else:
                    started = time.monotonic()
                    if self._run_channel(sock, address, "initiator") and time.monotonic() - started > 5:
                        delay = limits.RECONNECT_MIN
            if not static and not self._still_announced(address):
                return
            gevent.sleep(delay)
            delay = min(delay * 2, limits.RECONNECT_MAX)

    def _dial_source(self):
        """Dial from our listen address when it is a specific one (127.0.0.K in a
        simulation), so each peer is known by its own address."""
        host = self.config.listen[0]
        return None if host in ("", "0.0.0.0", "::") else (host, 0)

    def _address_connected(self, address) -> bool:
        return any(p.address == address for p in self.registry.connected())

    def _still_announced(self, address) -> bool:
        now = time.time()
        return any(p.address == address and p.discovered_at and now - p.discovered_at < limits.PEER_EXPIRY
                   for p in self.registry.peers.values())

    # -- events from peers -----------------------------------------------------
    def on_remote_events(self, session: Session, raw_events):
        """Merge a batch from a peer: (whether some wait for missing
        predecessors, the items the history validated: took, holds or had).
        Rejections are logged one line per session, kind and interval
        (``Rejections``); a session that keeps sending invalid events is closed.

        While the history cannot be written the batch is dropped: at recovery
        every peer gets our Summary and sends it again."""
        if self.disk.held:
            return False, []
        try:
            accepted, rejected = self.history.merge(raw_events, source=session)
        except LogBroken as exc:
            self.history_broken(exc)
            return False, []
        except LogWriteFailed as exc:
            self.disk.hold(exc)
            return False, []
        refused = {id(item) for item, _ in rejected}
        validated = [item for item in raw_events if id(item) not in refused]
        if rejected:
            self._rejected(session, rejected)
        self._accepted(accepted, session)
        if self.history.own_offered and self.own_events_elsewhere(session, self.history.own_offered):
            return False, validated
        return self.history.pending_count > 0, validated

    def _accepted(self, accepted, session) -> None:
        """Events newly in the history: forward them, show them, bring the folder to them."""
        if accepted:
            self.publish(accepted, session)
            self.reconciler.mark_dirty([e.path for e in accepted])

    def _rejected(self, session: Session, rejected) -> None:
        now = time.monotonic()
        for item, reason in rejected:
            path = item.get("path") if isinstance(item, dict) else getattr(item, "path", "?")
            line = session.rejections.note(str(reason), f"for {path!r}: {reason}", isinstance(reason, InvalidEvent),
                                           now)
            if line is not None:
                log.warning("rejected an event from %s %s", session.peer_id[:7], line)
        if session.rejections.too_many() and not session.closed.is_set():
            log.warning("dropping %s: it sent %d invalid events within %.0fs", session.peer_id[:7],
                        session.rejections.invalid_count, limits.INVALID_WINDOW)
            session.close("too many invalid events")

    def publish(self, events, source=None) -> None:
        """Events newly in the history, from ``source`` (a session; None: this
        peer's own): sent to the peers (not back to the source), listed by
        ``p2p status``, announced to the dashboard."""
        self.broadcast_q.put((events, source))
        self.recent.extend(events)
        del self.recent[:-20]
        self.feed.publish("history", {"count": len(events), "paths": sorted({e.path for e in events[-20:]})},
                          time.time())

    def _broadcast_loop(self) -> None:
        while True:
            batches = [self.broadcast_q.get()]
            while not self.broadcast_q.empty():
                batches.append(self.broadcast_q.get_nowait())
            for session in self.registry.sessions():
                if not session.ready:
                    continue
                # our own events go to everyone; a forwarded one is not sent to a
                # peer that has a channel with its origin (the origin sends it),
                # so a full mesh carries each change once per peer, not per pair
                events = [e for events, source in batches if source is not session
                          for e in events if not session.covers(e)
                          and (source is None or e.origin not in session.neighbors)]
                if events:
                    session.send_events(events)

    def read_block(self, block_hash: str, size: int) -> bytes:
        """A block for a peer, verified; large ones are read and hashed off the hub."""
        self.last_served = time.monotonic()
        if size > limits.SMALL_BLOCK:
            return self.bulkpool.apply(self._read_block, (block_hash,))
        return self._read_block(block_hash)

    def read_blocks(self, hashes) -> dict:
        """Small blocks for a peer, verified, read together (``BlockStore.get_many``):
        hash -> bytes of those this peer has (a large file's not archived yet from the file)."""
        self.last_served = time.monotonic()
        found = self.store.get_many(hashes)
        for block_hash in hashes:
            if block_hash not in found:
                try:
                    found[block_hash] = self.archive.read(block_hash)
                except BlockMissing:
                    pass
        return found

    def _transfers_quiet(self, for_seconds: float) -> bool:
        """Nothing fetched, and no block served for ``for_seconds``: a good moment for background copies."""
        return not self.fetcher.jobs and time.monotonic() - self.last_served >= for_seconds

    def _read_block(self, block_hash: str) -> bytes:
        try:
            return self.store.get(block_hash)
        except BlockMissing:
            return self.archive.read(block_hash, trust_unchanged=True)   # a large file not archived yet

    # -- housekeeping, status ------------------------------------------------------
    def _housekeeping_loop(self) -> None:
        ticks = 0
        while True:
            gevent.sleep(limits.FSYNC_INTERVAL)
            self._sync_history()
            try:
                self.threadpool.apply(self.store.flush)   # stored blocks visible to `p2p restore`
            except OSError as exc:   # a full home disk: the next tick commits (the records are in the packs)
                log.debug("block index not committed yet: %s", exc)
            ticks += 1
            if ticks % round(limits.PRUNE_CHECK_INTERVAL / limits.FSYNC_INTERVAL) == 0:
                self._bound_store(hourly=ticks % round(3600 / limits.FSYNC_INTERVAL) == 0)

    def _rescan_loop(self) -> None:
        """The last safety net for changes the watcher missed: the whole folder, every
        ``config.rescan_interval`` seconds (0: never). Unchanged paths record nothing."""
        while self.config.rescan_interval:
            gevent.sleep(self.config.rescan_interval)
            log.debug("rescanning the folder (every %gs)", self.config.rescan_interval)
            self.local_changes.rescan([""])

    def _sync_history(self) -> None:
        """The group commit: a failed fsync stops the peer (``history_broken``)."""
        try:
            self.history.sync()
        except LogBroken as exc:
            self.history_broken(exc)

    def history_broken(self, error: LogBroken) -> None:
        """events.jsonl cannot be trusted to reach the disk (a failed fsync: the
        kernel may have dropped what it had not written, and no retry can tell):
        stop with a non-zero exit rather than go on."""
        if not self.exit_code:
            self.fail(f"{error.strerror}. Check the disk (dmesg); at the next start events.jsonl is reread "
                      f"from the disk, and peers send again what it lacks")

    def take_held_events(self) -> bool:
        """Append the events the causal buffer took back after a failed write; False if it failed again."""
        try:
            accepted, _ = self.history.merge(())
        except LogBroken as exc:
            self.history_broken(exc)
            return False
        except LogWriteFailed as exc:
            self.disk.hold(exc)
            return False
        self._accepted(accepted, None)
        return True

    # -- device id -----------------------------------------------------------------
    def _check_device_id(self) -> None:
        """At start: a copied home, or a history that lacks events we issued,
        takes a new device id (the start-up scan then records the folder under it)."""
        why = [reason for reason in (home_copied(self.home, self.device_id), self.history.lost_own_events,
                                     self._own_events_only_in_state()) if reason]
        if why:
            self.retire_identity("; ".join(why))
            return
        try:
            record_home(self.home, self.device_id)
        except OSError as exc:   # recorded at a later start; only a copy made meanwhile goes unnoticed
            log.warning("cannot record where this home lives: %s", exc)

    def _own_events_only_in_state(self):
        """Why the local state shows that the log lost events we issued, or None.
        It journals a local event's id only once the event is in the log, so
        after a crash both hold it; only a lost or replaced log (or a power
        loss before the batch's fsync, when the event had not left: then a new
        id costs nothing but the change of id) names more of ours than the log."""
        seq = self.state.highest_seq(self.device_id)
        if seq > self.history.own_count:
            return (f"the local state names event {self.device_id[:7]}:{seq} of this device id, but "
                    f"events.jsonl holds {self.history.own_count} of its events")
        return None

    def own_events_elsewhere(self, session, seq: int) -> bool:
        """A peer holds our event ``seq`` and our log does not: a lost log or a
        copy of this home. Take a new device id; True if we did."""
        if seq <= self.history.own_count:
            return False
        try:
            self.retire_identity(f"peer {session.peer_id[:7]} holds {seq} events of this device id, our log "
                                 f"{self.history.own_count}: a lost or older events.jsonl, or a copy of this "
                                 f"home running elsewhere")
        except Exception as exc:   # whatever it is: going on under the old id could reuse a seq
            self.fail(f"cannot take a new device id: {exc}")
        return True

    def retire_identity(self, reason: str) -> None:
        """Never issue another event as this device id: take a new identity (the
        old key is kept aside), and reconnect every peer under it."""
        old = self.device_id
        self.identity = Identity.replace(self.home)
        self.device_id = self.identity.device_id
        self.history.change_device_id(self.device_id)
        record_home(self.home, self.device_id)   # the new id, where the home is now
        log.warning("NEW DEVICE ID: %s -> %s, because %s. Its events stay in the history; peers that use an "
                    "allow-list (.p2p/trusted) must add the new id; the old key is kept as "
                    ".p2p/identity.key.retired-%s", format_device_id(old), format_device_id(self.device_id),
                    reason, old)
        if self.discovery is not None:
            self.discovery.announce = Announce(self.device_id, self.listen_port, self.name)
        for session in self.registry.sessions():
            session.close("device id changed")

    def store_bound(self) -> int:
        """The block store's size bound: ``--keep-bytes``, or by default the
        folder's size plus as much again of old versions (p2p/history/retention.py)."""
        if self.config.keep_bytes is not None:
            return self.config.keep_bytes
        return default_bound(self.state.totals()["bytes"])

    def _bound_store(self, hourly: bool) -> None:
        """Prune when the store grew past its bound (its size is a running total:
        the O(folder) prune never runs while it fits, nor again while only what
        must be kept is over), and hourly with --keep-days."""
        size = self.threadpool.apply(self.store.total_bytes)
        if size > self.store_bound() and size > self._store_after_prune or hourly and self.config.keep_days is not None:
            self._prune()
            self._store_after_prune = self.threadpool.apply(self.store.total_bytes)

    def _prune(self) -> None:
        """Remove old versions' blocks, oldest first, down to the bound; never
        the current folder's, nor (with --keep-days) a version current within the window."""
        now = time.time()
        keep = {h for e in self.history.tree().values() for h, _ in e.blocks}
        max_age = None
        if self.config.keep_days is not None:
            max_age = self.config.keep_days * 86400
            view = EventLog(self.home / "events.jsonl", read_only=True)   # read in the pool, not the hub
            try:
                keep |= self.threadpool.apply(replaced_since, (lambda: (e for _, e in view.iter_from(0, view.size)),
                                                               now - max_age))
            finally:
                view.close()
        pruned = self.threadpool.apply(self.store.prune, (keep,), dict(
            max_bytes=self.store_bound(), max_age=max_age, now=now))
        if pruned:
            log.info("pruned %d old blocks from the store (bound %s)", pruned, human_size(self.store_bound()))

    def _progress_loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.fetcher.sample()
            self._send_have()
            for job in self.fetcher.status():
                if job["bytes"] >= PROGRESS_MIN_BYTES:
                    pct = 100.0 * job["done"] / job["bytes"]
                    say(f"  {job['path']}: {pct:5.1f}% of {human_size(job['bytes'])} "
                        f"at {human_size(job['rate'])}/s")

    def list_entries(self, path: str):
        """``path`` as our history says (for `p2p ls`; ``p2p.history.restore.listing``)."""
        return listing(self.history.tree(), path)

    # -- what we lack, what peers lack: `p2p status` -------------------------------
    def need(self) -> dict:
        """The versions our history holds that are not on our disk yet: files
        being fetched, waiting for a peer with their content, or that cannot
        be written; their bytes. Work grows with what is pending, not with the folder."""
        jobs = self.fetcher.jobs
        waiting = [p for p in self.unsynced.paths(WAITING) if p not in jobs]
        blocked = [p for p in self.reconciler.blocked if p not in jobs and p in self.unsynced]
        size = sum(job.remaining for job in jobs.values())
        for path in set(waiting) | set(blocked):
            current = self.history.current(path)
            if current is not None and current.kind == "file" and not current.is_delete:
                size += current.size
        return {"files": len(jobs) + len(set(waiting) | set(blocked)), "bytes": size, "waiting": sorted(waiting)}

    def _send_have(self) -> None:
        """Tell each ready peer what we have when it changed since our Summary
        or last Have to it: only the origins that moved, and what we still
        lack; nothing while idle. At most one Have per channel every
        ``limits.HAVE_INTERVAL`` seconds, and at most ``limits.HAVE_RATE`` a
        second in all (a large mesh waits longer), so the traffic per change
        stays O(N)."""
        sessions = [s for s in self.registry.sessions() if s.ready]
        if not sessions:
            return   # (what we lack is not worked out for nobody: a lookup per waiting path)
        need = self.need()
        counts = (need["files"], need["bytes"])
        vv = self.history.vv
        interval = max(limits.HAVE_INTERVAL, len(sessions) / limits.HAVE_RATE)
        now = time.monotonic()
        for session in sessions:
            sent_vv, sent_counts, sent_at = self._have_sent.get(session, ({}, (0, 0), 0.0))
            if now - sent_at < interval:
                continue
            moved = {o: seq for o, seq in vv.items() if sent_vv.get(o) != seq}
            if moved or sent_counts != counts:
                session.send(Have(vv=moved, files=counts[0], bytes=counts[1]))
                self._have_sent[session] = (vv, counts, now)

    def peer_summary(self, session: Session, vv: dict) -> None:
        """A peer's Summary: its whole version vector (what it has now)."""
        self._peer_vv(session, vv)

    def peer_has(self, session: Session, msg: Have) -> None:
        """A peer's Have: the origins that moved since its Summary or last Have
        on this channel, and what it still lacks of the versions it knows."""
        self._peer_vv(session, msg.vv).needs = (msg.files, msg.bytes)

    def _peer_vv(self, session: Session, vv: dict):
        info = self.registry.get(session.peer_id)
        if info.has_from is None or info.has_from() is not session or info.has_vv is None:
            info.has_vv, info.has_from, info.needs = {}, weakref.ref(session), (0, 0)   # a new channel
        ours = self.history.vv
        room = len(ours) + limits.HAVE_UNKNOWN_ORIGINS   # origins we know, and a few we may learn of
        for origin, seq in vv.items():
            if origin in ours or origin in info.has_vv or len(info.has_vv) < room:
                info.has_vv[origin] = seq
        return info

    def lacks(self, vv: dict) -> dict:
        """What a peer whose history is at ``vv`` lacks of ours: the events
        (counted from the two version vectors), and the files, directories and
        deletions whose current version it lacks with their bytes, from the
        events it lacks (None when they are more than limits.STATUS_LACK_EVENTS:
        the count of events is all that is said then)."""
        ours = self.history.vv
        events = sum(max(0, seq - vv.get(origin, 0)) for origin, seq in ours.items())
        out = {"events": events, "files": 0, "dirs": 0, "deletes": 0, "bytes": 0}
        if events > limits.STATUS_LACK_EVENTS:
            return dict(out, files=None, dirs=None, deletes=None, bytes=None)
        for path in {e.path for e in self.history.missing_for(vv)} if events else ():
            current = self.history.current(path)
            if current is None or vv.get(current.origin, 0) >= current.seq:
                continue    # it has the version that counts (the winner)
            if current.is_delete:
                out["deletes"] += 1
            elif current.kind == "dir":
                out["dirs"] += 1
            else:
                out["files"] += 1
                out["bytes"] += current.size
        return out

    def _peer_lacks(self, info) -> Optional[dict]:
        """``lacks`` for a peer's last Have, cached until either history moves."""
        if info.has_vv is None:
            return None
        key = (tuple(sorted(info.has_vv.items())), len(self.history))
        cached = self._lacks_cache.get(info.device_id)
        if cached is None or cached[0] != key:
            cached = self._lacks_cache[info.device_id] = (key, self.lacks(info.has_vv))
        lacking = dict(cached[1])
        lacking["receiving"] = {"files": info.needs[0], "bytes": info.needs[1]}
        return lacking

    def status(self) -> dict:
        store_bytes = self.threadpool.apply(self.store.total_bytes)   # first: the rest is read without a yield,
        now = time.time()                                             # so "missing" and the listings agree
        peers = [self._peer_status(p) for p in self.registry.peers.values()]
        known = {p.address for p in self.registry.peers.values() if p.address}
        unreached = [{"address": key, "last_error": _failure(f)} for key, f in self.registry.failures.items()]
        listed = {u["address"] for u in unreached}
        unreached += [{"address": f"{h}:{p}", "last_error": None} for h, p in self.config.peers
                      if (h, p) not in known and f"{h}:{p}" not in listed]
        need = self.need()
        transfers = self.fetcher.summary()
        local = self.local_changes.pending()
        totals = self.state.totals()
        missing = what_is_missing(
            paused=not self.folder_ready.is_set(), scanning=not self.scanned.is_set(), local=local,
            held=self.history.pending_count, transfers=transfers, waiting=need["waiting"],
            not_synced=len(self.unsynced) - len(self.unsynced.paths(WAITING)), checking=len(self.reconciler.dirty),
            peers=[(self.peer_label(p["id"]), p["lacks"]) for p in peers if p["connected"]])
        return {
            "device": self.device_id, "name": self.name, "folder": str(self.root),
            "listen": f"{self.config.listen[0]}:{self.listen_port}",
            "in_sync": not missing, "missing": missing,
            "peers": peers, "unreached": unreached,
            "transfers": self.fetcher.status(limits.STATUS_LIST_MAX), "transfer_total": transfers,
            "folder_state": dict(totals, events=len(self.history), replayed_at_start=self.history.replayed,
                                 pending=self.history.pending_count,
                                 local_changes=local, in_sync=not missing,
                                 store_bytes=store_bytes,
                                 store_bound=self.store_bound()),
            "not_synced": self.unsynced.listing(),
            "user_paused": self.pauses.listing(),
            "paused": "" if self.folder_ready.is_set() else f"the folder or its {MARKER} marker is missing",
            "recent": [{"time": e.time, "origin": e.origin, "type": e.type, "path": e.path, "size": e.size,
                        "moved_from": e.moved_from, "moved_to": e.moved_to} for e in self.recent[-10:]],
            "now": now,
        }

    def _peer_status(self, p) -> dict:
        address = p.address
        if address is None and p.session is not None:   # it dialled us: its host, and the port it listens on
            address = (p.session.address[0], p.session.listen_port or p.session.address[1])
        return {
            "id": p.device_id, "name": p.name, "state": p.state, "connected": p.session is not None,
            "address": f"{address[0]}:{address[1]}" if address else "",
            "connected_since": p.connected_since, "last_seen": p.last_seen,
            "sent": p.session.bytes_sent if p.session else 0,
            "received": p.session.bytes_received if p.session else 0,
            "lacks": self._peer_lacks(p), "last_error": _failure(p.last_error),
        }


def _failure(failure) -> Optional[dict]:
    return None if failure is None else {"reason": failure.reason, "time": failure.time, "count": failure.count}


def _lowercase(text: str) -> str:
    return text[:1].lower() + text[1:]


def handshake_failure(exc: BaseException) -> str:
    """A failed handshake in the words `p2p status` shows."""
    text = str(exc)
    if isinstance(exc, gevent.Timeout):
        return f"no handshake within {limits.HANDSHAKE_TIMEOUT:.0f}s"
    if "cluster secret mismatch" in text:
        return "cluster secret mismatch"
    if "not on the allow-list" in text:
        return "not on the allow-list"
    if "closed the connection during the handshake" in text:
        return "refused by the peer: a different cluster secret, or we are not on its allow-list"
    return _lowercase(text) or type(exc).__name__
