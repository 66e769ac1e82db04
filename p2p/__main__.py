"""Process entry point: gevent monkey-patching happens here and only here.

Threads stay native (``thread=False``) so watchdog's observer keeps a real OS
thread and its blocking inotify read never freezes the gevent hub; ``select``
and ``queue`` stay native too, because that thread polls the inotify
descriptor with ``select.poll`` and passes events through ``queue.Queue`` —
gevent's versions would run a second hub inside the observer thread and die
with LoopExit. ``ssl`` and ``subprocess`` are not used by a peer: leaving
them unpatched keeps OpenSSL out of memory (about 2 MB less per peer).

gevent announces each patch to its plugins, found as entry points of every
installed distribution: eleven scans of the environment's metadata (0.15 s
of each start, importlib.metadata included). p2p installs no gevent plugin
and needs none, so the announcement goes to the in-process subscribers only
(``gevent.events.notify``, which that lookup calls first anyway).
"""


def patch() -> None:
    """gevent's monkey-patching, as every p2p process needs it (before anything else)."""
    from gevent import events, monkey

    events.notify_and_call_entry_points = events.notify   # (no plugin lookup: see above)
    monkey.patch_all(thread=False, select=False, queue=False, ssl=False, subprocess=False)


def main(argv=None):
    patch()

    from p2p.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
