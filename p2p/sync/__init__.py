"""Sync rules as pure functions of the event set: winners, conflicts, plans."""
