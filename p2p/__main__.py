"""Process entry point: gevent monkey-patching happens here and only here.

Threads stay native (``thread=False``) so watchdog's observer keeps a real OS
thread and its blocking inotify read never freezes the gevent hub; ``select``
and ``queue`` stay native too, because that thread polls the inotify
descriptor with ``select.poll`` and passes events through ``queue.Queue`` —
gevent's versions would run a second hub inside the observer thread and die
with LoopExit. ``ssl`` and ``subprocess`` are not used by a peer: leaving
them unpatched keeps OpenSSL out of memory (about 2 MB less per peer).
"""


def patch() -> None:
    """gevent's monkey-patching, as every p2p process needs it (before anything else)."""
    from gevent import monkey

    monkey.patch_all(thread=False, select=False, queue=False, ssl=False, subprocess=False)


def main(argv=None):
    patch()

    from p2p.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
