"""The sub-commands of ``p2p``: one module per command, each with ``run(args) -> int``."""
