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

A pause lasts until resumed or until the peer stops (it is not saved).
"""

from __future__ import annotations

from gevent.event import Event


class Pauses:
    def __init__(self):
        self.folder = False
        self.peers: set = set()
        self.folder_resumed = Event()    # set while the folder is not paused by the user
        self.folder_resumed.set()

    def pause_folder(self) -> bool:
        """True if it was not paused already."""
        changed = not self.folder
        self.folder = True
        self.folder_resumed.clear()
        return changed

    def resume_folder(self) -> bool:
        changed = self.folder
        self.folder = False
        self.folder_resumed.set()
        return changed

    def pause_peer(self, device_id: str) -> bool:
        changed = device_id not in self.peers
        self.peers.add(device_id)
        return changed

    def resume_peer(self, device_id: str) -> bool:
        changed = device_id in self.peers
        self.peers.discard(device_id)
        return changed

    def holds(self, device_id: str) -> bool:
        return device_id in self.peers

    def listing(self) -> dict:
        return {"folder": self.folder, "peers": sorted(self.peers)}
