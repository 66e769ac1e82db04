"""Logging set-up: every line p2p prints while running goes through ``logging``
to stderr, in one format (or one JSON object per line with ``--log-json``).

Two kinds of lines share that stream. Activity lines (the ``p2p.activity``
logger: ``> create``, ``< update``, ``+ peer``, ``! conflict``, progress) say
what the peer does, at INFO (a conflict at WARNING), so ``--log-level
warning`` or ``error`` hides them. The other loggers (``p2p.fetch``,
``p2p.session``, ...) say what went wrong or, at DEBUG, how. Human format::

    12:08:15 INFO    > create notes/todo.txt
    12:08:16 WARNING unsynced: not syncing 'CON': a name Windows cannot hold

A burst of local changes says its first lines in full and counts the rest
(``Digest``): ``> ... and 99,980 more (99,980 create; `p2p log` lists them)``.

(local time; activity lines carry no component name). Python warnings and
uncaught exceptions in threads are routed here too, so nothing reaches the
terminal in another shape; a traceback is printed only for a real bug.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings

import ujson

ACTIVITY = "p2p.activity"
LEVELS = ("debug", "info", "warning", "error")


def activity() -> logging.Logger:
    """The logger of the activity lines."""
    return logging.getLogger(ACTIVITY)


def say(text: str, level: int = logging.INFO) -> None:
    """An activity line for the human running ``p2p run``: on stderr, in the
    one log format, hidden by ``--log-level warning``."""
    logging.getLogger(ACTIVITY).log(level, text)


class Digest:
    """Activity lines of a burst: the first ``limit`` of each ``window``
    seconds are said in full, the rest counted by kind and said as one line
    when the window ends or ``flush`` is called (the end of a scan): a scan
    of 100,000 new files says a few hundred lines instead of 100,000, and
    costs their formatting (every change is in the history: ``p2p log``
    lists them)."""

    def __init__(self, prefix: str, limit: int, window: float, clock=time.monotonic, say=say):
        self._prefix, self._limit, self._window, self._clock, self._say = prefix, limit, window, clock, say
        self._start = float("-inf")
        self._said = 0
        self._held: dict = {}   # kind -> lines not said in this window

    def add(self, kind: str, text: str) -> None:
        now = self._clock()
        if now - self._start >= self._window:
            self.flush()
            self._start, self._said = now, 0
        if self._said < self._limit:
            self._said += 1
            self._say(text)
        else:
            self._held[kind] = self._held.get(kind, 0) + 1

    def flush(self) -> None:
        """Say what was held back, as one line (nothing if nothing was)."""
        if self._held:
            counts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self._held.items()))
            self._say(f"{self._prefix} ... and {sum(self._held.values()):,} more ({counts}; `p2p log` lists them)")
            self._held = {}


def _component(name: str) -> str:
    return name[4:] if name.startswith("p2p.") else name


class LineFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL   [component: ]message``, local time."""

    converter = time.localtime

    def format(self, record: logging.LogRecord) -> str:
        source = "" if record.name in (ACTIVITY, "p2p") else _component(record.name) + ": "
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {source}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {"time": round(record.created, 3), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return ujson.dumps(obj, ensure_ascii=False)


def _thread_exception(args) -> None:
    if issubclass(args.exc_type, SystemExit):
        return
    logging.getLogger("p2p").error("unexpected error in thread %s", getattr(args.thread, "name", "?"),
                                   exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def setup_logging(level: str = "info", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("watchdog").setLevel(logging.ERROR)  # per-event debug; its overflow warnings: ours says it
    logging.captureWarnings(True)          # Python warnings: one line in this format, not a raw print
    # watchdog's RuntimeWarnings about its own watch bookkeeping (a directory
    # moved or removed while it adds or drops watches) are expected, not ours to show
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"watchdog(\.|$)")
    threading.excepthook = _thread_exception
