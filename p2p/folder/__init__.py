"""The local folder: what is on disk, turning disk changes into change records,
and writing remote versions into place safely (temp file, fsync, rename)."""
