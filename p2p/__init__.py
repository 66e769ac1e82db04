"""p2p: a peer-to-peer file synchroniser for local networks.

Every change to the shared folder is an immutable event in an append-only
JSONL history; peers exchange the events they lack and the content blocks the
events name. The packages are layered: ``wire`` (frames and messages, pure),
``transport`` (channels), ``history`` (events and the log, pure), ``blocks``
(content store), ``sync`` (merge rules, pure), ``net`` and ``watch`` (the
gevent edge), ``cli`` (the command).
"""

__version__ = "0.1.0"
