"""Logging set-up: every line p2p prints while running goes through ``logging``
to stderr, in one format (or one JSON object per line with ``--log-json``).

Two kinds of lines share that stream. Activity lines (the ``p2p.activity``
logger: ``> create``, ``< update``, ``+ peer``, ``! conflict``, progress) say
what the peer does, at INFO (a conflict at WARNING), so ``--log-level
warning`` or ``error`` hides them. The other loggers (``p2p.fetch``,
``p2p.session``, ...) say what went wrong or, at DEBUG, how. Human format::

    12:08:15 INFO    > create notes/todo.txt
    12:08:16 WARNING unsynced: not syncing 'CON': a name Windows cannot hold

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
