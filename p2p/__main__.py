"""Process entry point: gevent monkey-patching happens here and only here.

Threads stay native (``thread=False``) so watchdog's observer keeps a real OS
thread and its blocking inotify read never freezes the gevent hub.
"""


def main(argv=None):
    from gevent import monkey

    monkey.patch_all(thread=False)

    from p2p.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
