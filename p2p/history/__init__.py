"""The history: immutable events, the append-only log, version vectors, the index, restore."""
