"""Human-readable sizes for what p2p prints, and sizes typed by a human (pure)."""

import re

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([KMGT])(i?)(B?)|(B?))", re.IGNORECASE)
_POWERS = {"K": 1, "M": 2, "G": 3, "T": 4}


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'; bytes are shown without decimals."""
    for unit in UNITS:
        if n < 1024 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def parse_size(text: str) -> int:
    """A size typed by a human, in bytes: ``4096``, ``500M``, ``1G``, ``10GiB``,
    ``1.5T``, ``2GB``. K, M, G, T alone or with ``iB`` are powers of 1024 (as
    ``human_size`` prints them); with ``B`` alone (KB, MB, GB, TB) powers of
    1000. ValueError for anything else, a negative size included."""
    match = _SIZE.fullmatch(str(text).strip())
    if match is None and str(text).strip().startswith("-"):
        raise ValueError(f"{text!r}: a size cannot be negative")
    if match is None:
        raise ValueError(f"{text!r} is not a size (a number of bytes, or with a unit: 500M, 1G, 10GiB)")
    number, prefix, binary, b = match.group(1), match.group(2), match.group(3), match.group(4)
    if prefix is None:
        scale = 1
    else:
        base = 1000 if b and not binary else 1024
        scale = base ** _POWERS[prefix.upper()]
    return int(float(number) * scale)
