"""The local dashboard: a page served by the running peer on a loopback
address, and the JSON API under ``/rest/`` that the page uses (docs/API.md).

The parts here are plain, blocking code with no sockets and no gevent, tested
directly: who may come in (``access``), the numbered live updates
(``feed``), transfer rates (``rates``), what each endpoint answers given its
collaborators (``views``) and the WSGI application that routes requests to
them (``app``). The server itself, inside the node's hub, is
``p2p/net/gui.py``; the page is ``static/`` (plain HTML, CSS and JavaScript).
"""
