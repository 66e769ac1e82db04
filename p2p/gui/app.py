"""The dashboard's WSGI application: access (``p2p.gui.access``), routing,
JSON in and out, the static page.

Every route is a method of a *backend* (``p2p/net/gui.py`` in the node; a
fake in the tests): ``status()``, ``events(since, timeout)``,
``history(path, limit, before)``, ``tree(at, path)``, ``conflicts()``,
``file(event_id)`` -> (name, size, chunks), ``ls(peer, path)``,
``qr_svg()``, ``restore(path, at)``, ``pause(peer)``, ``resume(peer)``.
The application checks the request (token, Origin, parameters), calls the
backend and encodes the answer; it opens no socket and uses no gevent.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, quote

import ujson

from p2p import limits
from p2p.gui import access
from p2p.gui.views import ApiError, folder_path

log = logging.getLogger("p2p.gui")

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]
REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
           500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}
FORBIDDEN_PAGE = ("<!doctype html><meta charset=utf-8><title>p2p</title><p>This is a p2p dashboard. "
                  "Open the address that <code>p2p gui --home HOME</code> prints: it holds the access token.")


class App:
    def __init__(self, backend, token: str, host: str, port: int):
        self.backend = backend
        self.token = token
        self.port = port
        self.origins = access.origins(host, port)
        self.get_routes = {
            "/rest/status": lambda q: backend.status(),
            "/rest/events": lambda q: backend.events(_int(q, "since", 0), min(
                _float(q, "timeout", limits.GUI_LONG_POLL), limits.GUI_LONG_POLL)),
            "/rest/history": lambda q: backend.history(folder_path(_str(q, "path")), _int(
                q, "limit", limits.GUI_TIMELINE_DEFAULT), _int(q, "before", None)),
            "/rest/tree": lambda q: backend.tree(_str(q, "at") or "now", folder_path(_str(q, "path"))),
            "/rest/conflicts": lambda q: backend.conflicts(),
            "/rest/peer/ls": lambda q: backend.ls(_required(q, "peer"), folder_path(_str(q, "path"))),
        }
        self.post_routes = {
            "/rest/restore": lambda body: backend.restore(folder_path(_text(body, "path")), _text(body, "at")),
            "/rest/pause": lambda body: backend.pause(_text(body, "peer")),
            "/rest/resume": lambda body: backend.resume(_text(body, "peer")),
        }

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        given, source = access.presented(environ, self.port)
        if not access.token_matches(given, self.token):
            if path.startswith("/rest/"):
                return self._json(start_response, 403, {"error": "a valid access token is required "
                                                                 "(`p2p gui` prints the address with it)"})
            return self._send(start_response, 403, FORBIDDEN_PAGE.encode(), "text/html; charset=utf-8")
        try:
            if method == "POST":
                refused = access.origin_refused(environ, self.origins, source)
                if refused:
                    raise ApiError(403, refused)
                route = self.post_routes.get(path)
                if route is None:
                    raise ApiError(405 if path in self.get_routes else 404, f"no POST {path}")
                return self._json(start_response, 200, route(self._body(environ)))
            if method not in ("GET", "HEAD"):
                raise ApiError(405, f"{method} is not served here")
            if path in PAGES:
                if source == access.FROM_QUERY and path == "/":
                    return self._enter(start_response)
                return self._static(start_response, PAGES[path])
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if path == "/rest/file":
                return self._file(start_response, _required(query, "event"))
            if path == "/rest/device/qr.svg":
                return self._send(start_response, 200, self.backend.qr_svg(), "image/svg+xml")
            route = self.get_routes.get(path)
            if route is None:
                raise ApiError(405 if path in self.post_routes else 404, f"no GET {path}")
            return self._json(start_response, 200, route(query))
        except ApiError as exc:
            return self._json(start_response, exc.status, {"error": str(exc)})
        except Exception as exc:   # a bug: the page says so, the log has the traceback
            log.exception("dashboard: %s %s failed", method, path)
            return self._json(start_response, 500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

    # -- answers -------------------------------------------------------------------
    def _enter(self, start_response):
        """``/?token=...``: keep the token in a cookie and show the page under
        a URL without it (nothing to copy from the address bar or the history)."""
        cookie = f"{access.cookie_name(self.port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        start_response("303 See Other", [("Location", "/"), ("Set-Cookie", cookie), ("Content-Length", "0"),
                                         *SECURITY_HEADERS])
        return [b""]

    def _static(self, start_response, name: str):
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        return self._send(start_response, 200, (STATIC / name).read_bytes(), kind)

    def _file(self, start_response, event_id: str):
        name, size, chunks = self.backend.file(event_id)
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"), ("Content-Length", str(size)),
            ("Content-Disposition", f"attachment; filename*=UTF-8''{quote(name, safe='')}"), *SECURITY_HEADERS])
        return chunks

    def _json(self, start_response, status: int, data):
        body = ujson.dumps(data, ensure_ascii=False, escape_forward_slashes=False).encode()
        return self._send(start_response, status, body, "application/json; charset=utf-8")

    @staticmethod
    def _send(start_response, status: int, body: bytes, kind: str):
        start_response(f"{status} {REASONS.get(status, '')}",
                       [("Content-Type", kind), ("Content-Length", str(len(body))), *SECURITY_HEADERS])
        return [body]

    @staticmethod
    def _body(environ) -> dict:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ApiError(400, "bad Content-Length") from None
        if length > limits.GUI_MAX_BODY:
            raise ApiError(413, f"a request body is at most {limits.GUI_MAX_BODY} bytes")
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = ujson.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ApiError(400, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body


# -- parameters -------------------------------------------------------------------------
def _str(query: dict, name: str) -> str:
    return query.get(name, [""])[0]


def _required(query: dict, name: str) -> str:
    value = _str(query, name)
    if not value:
        raise ApiError(400, f"the parameter {name} is required")
    return value


def _int(query: dict, name: str, default: Optional[int]) -> Optional[int]:
    text = _str(query, name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {text!r}") from None


def _float(query: dict, name: str, default: float) -> float:
    text = _str(query, name)
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ApiError(400, f"{name} must be a number of seconds, not {text!r}")
    return value


def _text(body: dict, name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string")
    return value
