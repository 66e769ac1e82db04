"""Who may use the dashboard: the access token, and the Origin rule for
requests that change something.

The token (32 random bytes, URL-safe base64) is kept in ``HOME/.p2p/gui.token``,
mode 0600, made at the first start; a token file that other users can read is
replaced by a new token (the old one may have leaked). A request gets in when
it carries the token, in one of three ways:

- the ``X-P2P-Token`` header (scripts, ``curl``);
- the cookie ``p2p-token-PORT`` (HttpOnly, SameSite=Strict), which the server
  sets when a browser opens ``/?token=...`` (the URL ``p2p gui`` prints);
- the query parameter ``token``.

Everything else gets 403. A state-changing request (POST) must also come from
the page itself: its ``Origin`` header, when there is one, must name this
server (``http://HOST:PORT`` as served, or ``localhost`` for a loopback
host); with no Origin header, only a request that carries the token in the
``X-P2P-Token`` header gets in (a browser sends neither that header nor a
SameSite=Strict cookie cross-site without asking first, and this server
never grants a CORS preflight).

Plain code: reads and writes the token file, nothing else.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import stat as statmod
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Optional, Set, Tuple
from urllib.parse import parse_qs

TOKEN_FILE = "gui.token"
TOKEN_BYTES = 32
HEADER = "HTTP_X_P2P_TOKEN"     # X-P2P-Token, as WSGI names it
FROM_HEADER, FROM_COOKIE, FROM_QUERY = "header", "cookie", "query"


def token_path(home) -> Path:
    return Path(home) / ".p2p" / TOKEN_FILE


def load_or_create_token(home) -> str:
    """The dashboard's token, made (mode 0600) if missing, empty, or readable by others."""
    path = token_path(home)
    try:
        st = os.stat(path)
        token = path.read_text().strip()
        if token and not statmod.S_IMODE(st.st_mode) & 0o077:
            return token
    except FileNotFoundError:
        pass
    token = base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).decode().rstrip("=")
    temp = path.with_name(f".{TOKEN_FILE}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return token


def read_token(home) -> Optional[str]:
    """The token in ``home`` (for ``p2p gui``), or None if there is none yet."""
    try:
        return token_path(home).read_text().strip() or None
    except FileNotFoundError:
        return None


def cookie_name(port: int) -> str:
    """One cookie per server port: cookies ignore ports, and two peers on one
    machine each have their own token."""
    return f"p2p-token-{port}"


def presented(environ, port: int) -> Tuple[Optional[str], Optional[str]]:
    """(the token a request carries, where: FROM_HEADER, FROM_COOKIE or FROM_QUERY), or (None, None)."""
    if environ.get(HEADER):
        return environ[HEADER], FROM_HEADER
    try:
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        cookie = {}
    morsel = cookie.get(cookie_name(port))
    if morsel is not None and morsel.value:
        return morsel.value, FROM_COOKIE
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("token"):
        return query["token"][0], FROM_QUERY
    return None, None


def token_matches(given: Optional[str], token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def origins(host: str, port: int) -> Set[str]:
    """The Origin values of pages served by this server."""
    shown = f"[{host}]" if ":" in host else host
    names = {shown}
    if host.startswith("127.") or host in ("::1", "localhost"):
        names.add("localhost")
    return {f"http://{name}:{port}" for name in names}


def origin_refused(environ, allowed: Set[str], source: Optional[str]) -> Optional[str]:
    """Why a state-changing request may not go on, or None if it may."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        if source == FROM_HEADER:
            return None
        return "a request that changes something needs an Origin header naming this dashboard " \
               "(or the token in the X-P2P-Token header)"
    if origin not in allowed:
        return f"Origin {origin!r} is not this dashboard ({', '.join(sorted(allowed))})"
    return None
