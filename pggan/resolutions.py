"""The resolutions progressive growing trains at: powers of two from 4x4 (the paper's first stage) upward.
One definition, used by the config's checks, the schedule's stages, the networks' blocks and the data set's levels.
"""
from __future__ import annotations


def is_resolution(n: object) -> bool:
    """True for a power of two >= 4 (4, 8, 16, ...); False for anything else, bools included."""
    return isinstance(n, int) and not isinstance(n, bool) and n >= 4 and (n & (n - 1)) == 0


def resolutions(top: int, bottom: int = 4) -> list[int]:
    """[bottom, 2*bottom, 4*bottom, ..., top]: resolutions(32) == [4, 8, 16, 32]; [] when top < bottom."""
    if bottom < 1:
        raise ValueError(f"bottom={bottom!r}: the smallest resolution must be >= 1")
    out, res = [], bottom
    while res <= top:
        out.append(res)
        res *= 2
    return out
