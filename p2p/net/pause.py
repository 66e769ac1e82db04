"""What the user paused (``p2p pause``, the dashboard): the whole folder, or
single peers. Kept apart from the node's own pause for a missing folder
marker (``Node.folder_ready``), which the node lifts by itself.

- The folder: local changes are not recorded (``LocalChanges._record``) and
  nothing is written to it (``Reconciler.run`` waits on ``folder_resumed``);
  events from peers still reach the history, so nothing is lost, and on
  resume the folder is rescanned and the waiting versions written. Transfers
  under way finish; none starts.
- A peer: its channels are closed and none with it is accepted or kept
  (``Node._run_channel``) until it is resumed; the peer sees a Bye
  "paused by the user of that peer".

A pause lasts until resumed, across restarts: it is saved in
``.p2p/paused.json`` (written whole, atomically, 0600) at every change and
read at start. A file that cannot be read is said once and ignored (nothing
paused), since a peer that silently stopped syncing is worse.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import ujson
from gevent.event import Event

from p2p.security.identity import device_id_prefix
from p2p.security.private import PRIVATE_FILE

log = logging.getLogger("p2p.pause")


class Pauses:
    def __init__(self, file: Optional[Path] = None):
        """``file``: where the pauses are kept across restarts (None: not kept)."""
        self.file = file
        self.folder = False
        self.peers: set = set()
        self.folder_resumed = Event()    # set while the folder is not paused by the user
        self.folder_resumed.set()
        if file is not None and file.exists():
            self._load()

    def _load(self) -> None:
        try:
            saved = ujson.loads(self.file.read_bytes())
            folder, peers = saved["folder"], saved["peers"]
            if not (isinstance(folder, bool) and isinstance(peers, list) and all(isinstance(p, str) for p in peers)):
                raise ValueError("not a list of pauses")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s (%s): nothing is paused", self.file, exc)
            return
        self.peers = set(peers)
        if folder:
            self.folder = True
            self.folder_resumed.clear()

    def _saved(self, changed: bool) -> None:
        """Keep a change for the next start; a failed write is said, the pause holds for this run."""
        if not changed or self.file is None:
            return
        try:
            self._save()
        except OSError as exc:
            log.warning("cannot save the pause in %s (%s): it lasts until this peer stops", self.file, exc)

    def _save(self) -> None:
        temp = self.file.with_name(self.file.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as out:
            out.write(ujson.dumps(self.listing()).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.file)

    def pause_folder(self) -> bool:
        """True if it was not paused already."""
        changed = not self.folder
        self.folder = True
        self.folder_resumed.clear()
        self._saved(changed)
        return changed

    def resume_folder(self) -> bool:
        changed = self.folder
        self.folder = False
        self.folder_resumed.set()
        self._saved(changed)
        return changed

    def pause_peer(self, device_id: str) -> bool:
        changed = device_id not in self.peers
        self.peers.add(device_id)
        self._saved(changed)
        return changed

    def resume_peer(self, device_id: str) -> bool:
        changed = device_id in self.peers
        self.peers.discard(device_id)
        self._saved(changed)
        return changed

    def paused_peer(self, text: str) -> Optional[str]:
        """The paused device id that ``text`` names (the id or a unique prefix,
        dashes ignored), or None: a peer paused in an earlier run may not have
        connected in this one."""
        key = device_id_prefix(text)
        matches = [device_id for device_id in self.peers if device_id.startswith(key)]
        return matches[0] if key and len(matches) == 1 else None

    def holds(self, device_id: str) -> bool:
        return device_id in self.peers

    def listing(self) -> dict:
        return {"folder": self.folder, "peers": sorted(self.peers)}
