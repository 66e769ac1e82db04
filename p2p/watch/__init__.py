"""The watchdog edge: file-system notifications from a native thread, handed to
the gevent hub thread-safely and coalesced into scan requests."""
