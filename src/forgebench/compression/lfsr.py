"""Maximal-period linear feedback shift registers, the pseudo-random source of SeedLM.

SeedLM stores, per block of weights, only the K-bit seed of an LFSR; the decoder regenerates
the block's basis from it. The register must cycle through all 2^K - 1 non-zero states,
else some seeds would generate the same sequence and the search would waste them, so the
feedback taps come from a table of primitive polynomials (Xilinx XAPP052, the standard
table of maximal-length taps); tests/test_seedlm.py checks the period by enumeration.

Register convention (Fibonacci form): the state ``s`` is a K-bit integer; one step is
``s' = ((s << 1) | parity(s & tap_mask)) & (2^K - 1)`` where ``tap_mask`` has bit ``t - 1``
set for each tap ``t``. Its recurrence is a_{n+K} = XOR_t a_{n+K-t}: the reciprocal of the
tabulated polynomial, primitive whenever that one is.

Numbers from states: the j-th value (j = 0, 1, ...) is the state after j + 1 steps, mapped
to ``(2 s - 2^K) / 2^K``, an exact dyadic rational in (-1, 1), symmetric about 0. Being
exact in float32 (K <= 20 here) is what lets a decoder reproduce a block bit for bit.
The table stops at K = 20, the widest whose period the tests enumerate.
"""

from __future__ import annotations

import numpy as np

# Feedback taps (1-based stage numbers) of maximal-length LFSRs, from Xilinx XAPP052.
TAPS: dict[int, tuple[int, ...]] = {
    2: (2, 1),
    3: (3, 2),
    4: (4, 3),
    5: (5, 3),
    6: (6, 5),
    7: (7, 6),
    8: (8, 6, 5, 4),
    9: (9, 5),
    10: (10, 7),
    11: (11, 9),
    12: (12, 6, 4, 1),
    13: (13, 4, 3, 1),
    14: (14, 5, 3, 1),
    15: (15, 14),
    16: (16, 15, 13, 4),
    17: (17, 14),
    18: (18, 11),
    19: (19, 6, 2, 1),
    20: (20, 17),
}
MIN_BITS = min(TAPS)
MAX_BITS = max(TAPS)


def tap_mask(bits: int) -> int:
    """The feedback mask of the K = ``bits`` register."""
    if bits not in TAPS:
        raise ValueError(f"LFSR width {bits} not tabulated; allowed {MIN_BITS}..{MAX_BITS}")
    mask = 0
    for t in TAPS[bits]:
        mask |= 1 << (t - 1)
    return mask


def _parity(x: np.ndarray) -> np.ndarray:
    """Bitwise parity of each element of a uint64 array (xor-folding)."""
    x = x.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        x ^= x >> np.uint64(shift)
    return x & np.uint64(1)


def step(states: np.ndarray, bits: int) -> np.ndarray:
    """One step of every register in ``states`` (uint64 array of K-bit states)."""
    states = np.asarray(states, dtype=np.uint64)
    fb = _parity(states & np.uint64(tap_mask(bits)))
    return ((states << np.uint64(1)) | fb) & np.uint64((1 << bits) - 1)


def step_int(state: int, bits: int) -> int:
    """One step of a single register (plain Python, for enumeration tests)."""
    fb = (state & tap_mask(bits)).bit_count() & 1
    return ((state << 1) | fb) & ((1 << bits) - 1)


def period(bits: int, seed: int = 1) -> int:
    """Steps until the register started at ``seed`` returns to it (2^K - 1 if maximal)."""
    s = step_int(seed, bits)
    n = 1
    limit = 1 << bits
    while s != seed:
        s = step_int(s, bits)
        n += 1
        if n > limit:
            raise RuntimeError("LFSR did not return to its seed")
    return n


def states_sequence(seeds: np.ndarray, bits: int, length: int) -> np.ndarray:
    """The ``length`` states after the seeds, vectorised over seeds: shape (len(seeds), length)."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    if np.any(seeds == 0) or np.any(seeds >= np.uint64(1 << bits)):
        raise ValueError(f"seeds must be non-zero {bits}-bit integers")
    out = np.empty((seeds.size, length), dtype=np.uint64)
    s = seeds
    for j in range(length):
        s = step(s, bits)
        out[:, j] = s
    return out


def uniform_values(seeds: np.ndarray, bits: int, length: int) -> np.ndarray:
    """The sequence as float32 values (2 s - 2^K) / 2^K in (-1, 1), exactly."""
    states = states_sequence(seeds, bits, length).astype(np.float64)
    return ((2.0 * states - float(1 << bits)) / float(1 << bits)).astype(np.float32)
