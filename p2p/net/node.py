"""A running peer: wires the history, the block store, the folder, the watcher
and the network together inside one gevent hub.

Greenlets, each owned here and killed on stop:
- the listener (one greenlet per inbound connection: handshake, then the
  session's reader) and one dialer per known address (reconnect with backoff);
- discovery (announce and listen), if enabled;
- the broadcaster: new events (local, or accepted from one peer) to every
  other ready peer, deduplicated by what each peer is known to have;
- the local loop: coalesced paths from the watcher are scanned (hashing in the
  thread pool) and become events;
- the reconciler: paths whose winning version differs from the disk are
  written, deleted or fetched (``Fetcher``);
- housekeeping: group-commit fsync of the log, saving the local state.
All history mutations happen in the hub, through the single ``EventLog``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import gevent
from gevent.event import Event
from gevent.pool import Group, Pool
from gevent.queue import Queue
from gevent.server import StreamServer
from gevent.threadpool import ThreadPool

from p2p import limits
from p2p.config import LAN, Config
from p2p.blocks.store import BlockMissing, BlockStore
from p2p.folder.apply import FolderWriter, LocalChanged, UnsafeTarget
from p2p.folder.archive import PendingArchive
from p2p.folder.scan import Change, FileBusy, Scanner
from p2p.folder.state import LocalState
from p2p.history.history import History
from p2p.net.announce import Announce
from p2p.net.control import ControlServer
from p2p.net.discovery import Discovery
from p2p.net.fetcher import Fetcher
from p2p.net.peers import PeerRegistry
from p2p.net.session import Session
from p2p.security.handshake import perform_handshake
from p2p.security.identity import Identity, format_device_id
from p2p.security.membership import load_secret, load_trusted, mode_description
from p2p.sync.merge import winner
from p2p.sync.plan import (FETCH, MAKE_DIR, RELABEL, REMOVE, REPLACE, conflict_copies, folder_action,
                           local_parents, paths_to_recheck)
from p2p.sync.ignore import IgnoreRules
from p2p.transport import TcpChannel
from p2p.watch.watcher import Coalescer, FolderWatcher
from p2p.wire.messages import Neighbors, Summary

log = logging.getLogger("p2p.node")

HUMAN_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
PROGRESS_MIN_BYTES = 16 * limits.MiB
ARCHIVE_QUIET = 0.5             # s without transfers before large files are archived


def human_size(n: float) -> str:
    for unit in HUMAN_SIZE_UNITS:
        if n < 1024 or unit == HUMAN_SIZE_UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class Node:
    def __init__(self, config: Config, out=print):
        self.config = config
        self.out = out
        self.home = Path(config.home)
        self.root = Path(config.root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.home / ".p2p").mkdir(parents=True, exist_ok=True)
        self.identity = Identity.load_or_create(self.home)
        self.device_id = self.identity.device_id
        self.name = config.name
        self.secret = load_secret(config.secret_file, config.secret_env)
        self.trusted = load_trusted(self.home)
        self.history = History.open(self.home, self.device_id)
        self.store = BlockStore(self.home / ".p2p" / "blocks")
        self.state = LocalState(self.home / ".p2p" / "local.json")
        self.ignore = IgnoreRules(self.root)
        self.scanner = Scanner(self.root, self.state, self.store, self.ignore.matches)
        self.writer = FolderWriter(self.root, self.state, self.store)
        self.archive = PendingArchive(self.root, self.store)
        self.registry = PeerRegistry()
        self.fetcher = Fetcher(self)
        self.threadpool = gevent.get_hub().threadpool   # short file-system work
        self.bulkpool = ThreadPool(limits.BULK_THREADS)  # large buffers: never delays the short work
        self.greenlets = Group()
        self.local_q: Queue = Queue()
        self.broadcast_q: Queue = Queue()
        self.dirty: set = set()
        self._dirty_event = Event()
        self.stopped = Event()
        self.scanned = Event()          # the start-up scan is done
        self.recent: list = []          # the last events, for `p2p status`
        self.listen_port = config.listen[1]
        self.server = None
        self.discovery = None
        self.watcher = None
        self.control = None
        self._dialing: dict = {}        # address -> dialer greenlet
        self._inbound_per_host: dict = {}
        self.last_served = 0.0          # when a block was last read for a peer

    # -- start and stop --------------------------------------------------------
    def start(self) -> None:
        host, port = self.config.listen
        self.server = StreamServer((host, port), self._handle_inbound, spawn=Pool(limits.MAX_CONNECTIONS))
        self.server.init_socket()
        self.server.start()
        self.listen_port = self.server.server_port
        self.say(f"p2p device {format_device_id(self.device_id)} ({self.name})")
        self.say(f"folder {self.root}  history {self.home / 'events.jsonl'} ({len(self.history)} events)")
        self.say(f"listening on {host}:{self.listen_port}")
        self.say(mode_description(self.secret, self.trusted))
        self.coalescer = Coalescer(self._local_paths)
        self.watcher = FolderWatcher(self.root, self.coalescer)
        self.watcher.start()
        self.control = ControlServer(self)
        self.control.start()
        for target in (self.coalescer.run, self._local_loop, self._broadcast_loop, self._reconcile_loop,
                       self._housekeeping_loop, self._progress_loop):
            self._spawn(target)
        self.local_q.put([""])  # the start-up scan: the whole folder
        self.mark_dirty(list(self.history.paths()))
        for address in self.config.peers:
            self._dial(address, static=True)
        if self.config.discovery is not None:
            self._start_discovery()

    def _start_discovery(self) -> None:
        target = None if self.config.discovery == LAN else self.config.discovery[0]
        self.discovery = Discovery(Announce(self.device_id, self.listen_port, self.name),
                                   self.config.discovery_port, target, self.config.listen[0], self._discovered)
        self._spawn(self.discovery.listen_loop)
        self._spawn(self.discovery.announce_loop)
        where = "LAN broadcast " + ", ".join(self.discovery.targets()) if target is None else target
        self.say(f"discovery on {where} port {self.config.discovery_port}")

    def _spawn(self, fn, *args):
        greenlet = self.greenlets.spawn(fn, *args)
        greenlet.link_exception(lambda g: log.error("%s crashed: %r", getattr(fn, "__name__", fn), g.exception))
        return greenlet

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
        self.greenlets.kill(block=True, timeout=2)
        self.fetcher.pool.kill(block=True, timeout=2)
        if self.discovery:
            self.discovery.close()
        self.history.close()
        self.state.save()
        self.stopped.set()

    def say(self, text: str) -> None:
        """A line for the human running ``p2p run`` (stdout); logs go to stderr."""
        self.out(f"{time.strftime('%H:%M:%S')}  {text}")

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
            return False
        tcp.max_frame = result.channel.max_frame = limits.MAX_FRAME  # authenticated: full-size frames
        peer_id = result.peer_id
        initiator = self.device_id if role == "initiator" else peer_id
        session = Session(self, result.channel, peer_id, address, initiator)
        to_close = self.registry.attach(peer_id, session, time.time())
        if to_close is session:
            session.close("duplicate channel")
            return True
        if to_close is not None:
            to_close.close("duplicate channel")
        info = self.registry.get(peer_id)
        if role == "initiator":
            info.address = address
        self.say(f"+ peer {peer_id[:7]} at {address[0]}:{address[1]} connected")
        self._neighbors_changed(lost=False)
        self.mark_dirty(list(self.fetcher_waiting()))
        session.run()
        return True

    def _offload(self, fn):
        """Run CPU-heavy work on a large buffer in the thread pool, off the hub."""
        return self.bulkpool.apply(fn)

    def fetcher_waiting(self):
        """Paths whose wanted content we do not have yet (a new peer may have it)."""
        for path in self.history.paths():
            target = self.history.current(path)
            if target is not None and target.type != "delete" and target.kind == "file":
                entry = self.state.get(path)
                if entry is None or entry.hash != target.hash:
                    yield path

    def session_ended(self, session: Session) -> None:
        if self.registry.detach(session.peer_id, session):
            self.say(f"- peer {session.peer_id[:7]} disconnected")
            self._neighbors_changed(lost=True)

    def neighbor_ids(self):
        return tuple(p.device_id for p in self.registry.connected())

    def _neighbors_changed(self, lost: bool) -> None:
        """Tell every peer whom we are connected to. After losing a channel,
        also ask the others for what it would have brought us."""
        ids = self.neighbor_ids()
        for session in self.registry.sessions():
            session.send(Neighbors(ids=ids))
            if lost:
                session.send(Summary(vv=self.history.vv))

    def peer_seen(self, session: Session) -> None:
        info = self.registry.peers.get(session.peer_id)
        if info is not None:
            info.last_seen = time.time()

    def peer_hello(self, session: Session) -> None:
        info = self.registry.get(session.peer_id)
        info.name = session.name

    def _discovered(self, announce: Announce, host: str) -> bool:
        info = self.registry.get(announce.device_id)
        new = info.discovered_at is None
        info.discovered_at = time.time()
        info.name = info.name or announce.name
        address = (host, announce.port)
        info.address = info.address or address
        if info.session is None and self.device_id < announce.device_id:
            self._dial(address, static=False)  # the smaller id dials; the other waits
        return new

    def _dial(self, address, static: bool) -> None:
        current = self._dialing.get(address)
        if current is not None and not current.dead:
            return
        self._dialing[address] = self._spawn(self._dial_loop, address, static)

    def _dial_loop(self, address, static: bool) -> None:
        delay = limits.RECONNECT_MIN
        while not self.stopped.is_set():
            if not static and self._address_connected(address):
                return
            try:
                sock = socket.create_connection(address, timeout=5, source_address=self._dial_source())
                sock.settimeout(None)
            except OSError as exc:
                log.debug("dial %s:%s failed: %s", address[0], address[1], exc)
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
    def on_remote_events(self, session: Session, raw_events) -> bool:
        """Merge a batch from a peer; True if some wait for missing predecessors."""
        accepted, rejected = self.history.merge(raw_events)
        for item, reason in rejected:
            path = item.get("path") if isinstance(item, dict) else getattr(item, "path", "?")
            log.warning("rejected an event from %s for %r: %s", session.peer_id[:7], path, reason)
        if accepted:
            self.broadcast_q.put((accepted, session))
            self._remember(accepted)
            self.mark_dirty([e.path for e in accepted])
        return self.history.pending_count > 0

    def _remember(self, events) -> None:
        self.recent.extend(events)
        del self.recent[:-20]

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

    # -- local changes -----------------------------------------------------------
    def _local_paths(self, paths) -> None:
        self.local_q.put(paths)

    def _local_loop(self) -> None:
        while True:
            paths = list(self.local_q.get())
            while not self.local_q.empty():
                paths.extend(self.local_q.get_nowait())
            if ".p2pignore" in paths:
                self.ignore.reload()
            scanned = self._expand(paths)
            results = list(self.threadpool.imap(self._observe, scanned))
            busy = [r.args[0] for r in results if isinstance(r, FileBusy)]
            if busy:
                self.coalescer.add(busy)   # still being written: look again when quiet
            self._record([r for r in results if r is not None and not isinstance(r, FileBusy)])
            self.mark_dirty(paths_to_recheck(scanned))
            if "" in paths and not self.scanned.is_set():
                self.scanned.set()
                self._spawn(self._archive_unarchived)
                self.say(f"scanned the folder: {len(self.history.tree())} paths in sync history")

    def _observe(self, path: str):
        """Scan one path (in a pool thread, several at once): its Change, None if
        unchanged or unreadable, or the FileBusy it raised."""
        started = time.monotonic()
        try:
            change = self.scanner.observe(path)
            if change is not None and change.size > limits.ARCHIVE_LATER_MIN:
                log.debug("scanned %s (%s) in %.3fs", path, human_size(change.size), time.monotonic() - started)
            return change
        except FileBusy as busy:
            log.debug("%s changed while being scanned: later", path)
            return busy
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
        return None

    def _expand(self, paths):
        """Each reported path plus, for directories, everything under it (disk or record)."""
        out = {}
        for path in paths:
            full = self.root / path
            on_disk_dir = path == "" or os.path.isdir(full) and not os.path.islink(full)
            if on_disk_dir:
                startup = path == "" and not self.scanned.is_set()
                for p in self.threadpool.apply(lambda: list(self.scanner.walk(path, startup))):
                    out[p] = None
            elif path:
                out[path] = None
            entry = self.state.get(path)
            if on_disk_dir or (entry is not None and entry.kind == "dir"):
                for p in self.state.under(path):  # children that may be gone
                    out[p] = None
        return sorted(out)

    def _record(self, changes) -> None:
        """Turn disk changes into events: renames paired by content, deletes children first."""
        deleted = {c.path: c for c in changes if c.deleted}
        created = [c for c in changes if not c.deleted]
        by_hash = {}
        for c in deleted.values():
            entry = self.state.get(c.path)
            if entry is not None and entry.kind == "file":
                by_hash.setdefault(entry.hash, []).append(c)
        new_events = []
        for c in created:
            moved_from = None
            if c.kind == "file" and c.size and self.state.get(c.path) is None:
                source = by_hash[c.hash].pop(0) if by_hash.get(c.hash) else self._vanished_with(c.hash)
                if source is not None:
                    deleted.pop(source.path, None)
                    new_events += self._local_event(source, moved_to=c.path)
                    moved_from = source.path
            new_events += self._local_event(c, moved_from=moved_from)
        for c in sorted(deleted.values(), key=lambda c: c.path.count("/"), reverse=True):
            new_events += self._local_event(c)
        if new_events:
            self.history.sync()  # one fsync for the batch, before any of it leaves this machine
            self.broadcast_q.put((new_events, None))
            self._remember(new_events)
            for e in new_events:
                label = e.type if not (e.moved_from or e.moved_to) else "rename"
                if e.moved_to:
                    continue
                extra = f" (from {e.moved_from})" if e.moved_from else ""
                self.say(f"> {label} {e.path}{extra}")

    def _vanished_with(self, digest: str):
        """A recorded file with this content that is gone from disk: the source of a
        move whose two halves reached us in different batches (a moved directory)."""
        for path in self.state.with_hash(digest):
            if not os.path.lexists(self.root / path):
                return Change(path, "file", deleted=True)
        return None

    def _local_event(self, change, moved_from=None, moved_to=None) -> list:
        path = change.path
        entry = self.state.get(path)
        heads = self.history.heads(path)
        current = winner(heads)
        live = current is not None and current.type != "delete"
        if change.deleted:
            self.state.pop(path)
            if not live or entry is None:
                return []
            parents = local_parents(entry.event_id, True, heads)
            return [self.history.make_local("delete", entry.kind, path, parents=parents, time=time.time(),
                                            moved_to=moved_to, durable=False)]
        if live and current.kind == change.kind and current.hash == change.hash and current.mode == change.mode:
            self.state.set(path, change.entry(current.id))   # already what the history says
            return []
        parents = local_parents(entry.event_id if entry else None, entry is not None, heads)
        event = self.history.make_local(
            "update" if live and entry is not None else "create", change.kind, path,
            size=change.size, mode=change.mode, mtime=change.mtime, hash=change.hash, blocks=change.blocks,
            parents=parents, time=time.time(), moved_from=moved_from, durable=False)
        self.state.set(path, change.entry(event.id))
        if not change.stored:
            self.archive_later(path, change.blocks)
        return [event]

    # -- bringing the folder to the winning versions ----------------------------
    def mark_dirty(self, paths) -> None:
        self.dirty.update(paths)
        if self.dirty:
            self._dirty_event.set()

    def _reconcile_loop(self) -> None:
        self.scanned.wait()
        while True:
            self._dirty_event.wait()
            self._dirty_event.clear()
            paths, self.dirty = self.dirty, set()
            targets = {p: self.history.current(p) for p in paths}
            alive = sorted(p for p, t in targets.items() if t is not None and t.type != "delete")
            gone = sorted((p for p in paths if p not in alive), key=lambda p: p.count("/"), reverse=True)
            for path in alive + gone:
                try:
                    self._reconcile(path, targets[path])
                except LocalChanged as exc:
                    self.local_q.put([str(exc)])
                except UnsafeTarget as exc:
                    log.warning("refusing to write %s", exc)
                except OSError as exc:
                    log.warning("cannot apply %s: %s", path, exc)

    def _reconcile(self, path: str, target) -> None:
        if not path or self.ignore.matches(path):
            return
        self._keep_conflict_copies(path)
        entry = self.state.get(path)
        action = folder_action(target, entry.kind if entry else None, entry.hash if entry else "",
                               entry.event_id if entry else "")
        if action == REMOVE:
            if entry.kind == "file" and entry.event_id:
                self._archive_now(path, self.history.get(entry.event_id))  # its history outlives it
            if self.threadpool.apply(self.writer.remove, (path,)):
                self.say(f"< delete {path}" + (f" (from {target.origin[:7]})" if target else ""))
                self.mark_dirty(paths_to_recheck([path]))
            else:
                log.info("kept directory %s: it holds files added meanwhile", path)
        elif action == MAKE_DIR:
            self.threadpool.apply(self.writer.make_dir, (path, target))
        elif action == REPLACE:   # a file where a directory won, or the reverse
            if entry.kind == "file" and entry.event_id:
                self._archive_now(path, self.history.get(entry.event_id))
            if not self.threadpool.apply(self.writer.remove, (path,)):
                log.warning("cannot put a file at %s: the directory there holds files", path)
                return
            self.mark_dirty([path])   # now the plain make_dir or fetch
        elif action == RELABEL:
            self.state.set(path, replace(entry, event_id=target.id))
        elif action == FETCH:
            self.fetcher.want(path, target)

    def _keep_conflict_copies(self, path: str) -> None:
        """Our version lost to a concurrent one: keep it beside, as a conflict copy."""
        for copy, loser in conflict_copies(path, self.history.heads(path), self.device_id):
            if self.history.heads(copy) or os.path.lexists(self.root / copy):
                continue
            self._archive_now(path, loser)
            if self.store.missing(loser.blocks):
                log.warning("cannot keep %s as %s: its content is gone from this peer", path, copy)
                continue
            self.threadpool.apply(self.writer.write_file, (copy, loser))
            self.state.pop(copy)  # not recorded yet: the local loop records it
            self.local_q.put([copy])
            self.say(f"! conflict on {path}: our version kept as {copy}")

    def still_wanted(self, path: str, event) -> bool:
        current = self.history.current(path)
        if current is None or current.id != event.id:
            self.mark_dirty([path])
            return False
        return True

    def commit_remote_file(self, pending) -> None:
        """Called by the fetcher once every block is written: rename into place."""
        path, event = pending.path, pending.event
        if not self.still_wanted(path, event):
            pending.abort()
            return
        self._keep_conflict_copies(path)
        entry = self.state.get(path)
        existed = entry is not None
        if existed and entry.event_id:
            self._archive_now(path, self.history.get(entry.event_id))  # the version we replace
        try:
            pool = self.bulkpool if event.size > limits.SMALL_BLOCK else self.threadpool
            pool.apply(pending.commit)
            if event.size > limits.ARCHIVE_LATER_MIN:
                self.archive_later(path, event.blocks)
        except LocalChanged:
            self.local_q.put([path])
            return
        self.say(f"< {'update' if existed else 'create'} {path} ({human_size(event.size)}) from {event.origin[:7]}")

    def fetch_finished(self, job) -> None:
        current = self.history.current(job.path)
        if current is not None and current.id != job.event.id:
            self.mark_dirty([job.path])

    def read_block(self, block_hash: str) -> bytes:
        self.last_served = time.monotonic()
        try:
            return self.store.get(block_hash)
        except BlockMissing:
            return self.archive.read(block_hash)   # a large file not archived yet

    def archive_later(self, path: str, blocks) -> None:
        """Copy a large file's blocks into the store in the background (history)."""
        if self.archive.register(path, blocks):
            self._spawn(self._archive_job, path, tuple(blocks))

    def _archive_job(self, path: str, blocks) -> None:
        # on two cores, archiving during a transfer would slow the transfer: wait
        # until nothing has been fetched or served for a moment
        while self.fetcher.jobs or time.monotonic() - self.last_served < ARCHIVE_QUIET:
            gevent.sleep(ARCHIVE_QUIET)
        self.archive.forget(self.bulkpool.apply(self.archive.store_all, (path, blocks)))

    def _archive_now(self, path: str, event) -> None:
        """Archive a version's pending blocks before its file is overwritten."""
        if event is not None and any(h in self.archive for h, _ in event.blocks):
            self.archive.forget(self.bulkpool.apply(self.archive.store_all, (path, event.blocks)))

    def _archive_unarchived(self) -> None:
        """After a crash: archive the large current files whose blocks the store lacks."""
        for path, event in self.history.tree().items():
            entry = self.state.get(path)
            if (event.kind == "file" and event.size > limits.ARCHIVE_LATER_MIN and entry is not None
                    and entry.hash == event.hash and self.store.missing(event.blocks)):
                self.archive_later(path, event.blocks)

    # -- housekeeping, status ------------------------------------------------------
    def _housekeeping_loop(self) -> None:
        ticks = 0
        while True:
            gevent.sleep(limits.FSYNC_INTERVAL)
            self.history.sync()
            ticks += 1
            if ticks % 25 == 0:
                self.threadpool.apply(self.state.save)
            if ticks % 300 == 0 and (self.config.keep_bytes or self.config.keep_days):
                self._prune()

    def _prune(self) -> None:
        keep = {h for e in self.history.tree().values() for h, _ in e.blocks}
        max_age = self.config.keep_days * 86400 if self.config.keep_days else None
        pruned = self.threadpool.apply(self.store.prune, (keep,), dict(
            max_bytes=self.config.keep_bytes, max_age=max_age, now=time.time()))
        if pruned:
            log.info("pruned %d old blocks from the store", pruned)

    def _progress_loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            for job in self.fetcher.status():
                if job["bytes"] >= PROGRESS_MIN_BYTES:
                    pct = 100.0 * job["done"] / job["bytes"]
                    self.say(f"  {job['path']}: {pct:5.1f}% of {human_size(job['bytes'])} "
                             f"at {human_size(job['rate'])}/s")

    def list_entries(self, path: str):
        """The folder one level under ``path``, as our history says (for `p2p ls`)."""
        prefix = path.strip("/")
        start = prefix + "/" if prefix else ""
        out = {}
        for p, e in self.history.tree().items():
            if not p.startswith(start) or p == prefix:
                continue
            name, _, rest = p[len(start):].partition("/")
            if rest:
                out.setdefault(name, {"name": name, "kind": "dir", "size": 0, "mtime": 0, "origin": ""})
            else:
                out[name] = {"name": name, "kind": e.kind, "size": e.size, "mtime": e.mtime,
                             "origin": e.origin, "hash": e.hash}
        return sorted(out.values(), key=lambda d: d["name"])

    def status(self) -> dict:
        tree = self.history.tree()
        now = time.time()
        return {
            "device": self.device_id, "name": self.name, "folder": str(self.root),
            "listen": f"{self.config.listen[0]}:{self.listen_port}",
            "peers": [{
                "id": p.device_id, "name": p.name, "state": p.state,
                "address": f"{p.address[0]}:{p.address[1]}" if p.address else "",
                "connected_since": p.connected_since, "last_seen": p.last_seen,
                "sent": p.session.bytes_sent if p.session else 0,
                "received": p.session.bytes_received if p.session else 0,
            } for p in self.registry.peers.values()],
            "transfers": self.fetcher.status(),
            "folder_state": {
                "files": sum(1 for e in tree.values() if e.kind == "file"),
                "dirs": sum(1 for e in tree.values() if e.kind == "dir"),
                "bytes": sum(e.size for e in tree.values() if e.kind == "file"),
                "events": len(self.history), "pending": self.history.pending_count,
                "in_sync": not self.dirty and not self.fetcher.jobs,
            },
            "recent": [{"time": e.time, "origin": e.origin, "type": e.type, "path": e.path, "size": e.size}
                       for e in self.recent[-10:]],
            "now": now,
        }
