"""Content-addressed block store and the file <-> block-list conversion."""
