"""The gevent edge: discovery, the listener and dialers, one session per peer,
the broadcaster, the block fetcher and the local control socket."""
