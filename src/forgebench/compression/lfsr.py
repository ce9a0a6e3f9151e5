"""Maximal-period linear feedback shift registers, the pseudo-random source of SeedLM.

SeedLM stores, per block of weights, only the K-bit seed of an LFSR; the decoder regenerates
the block's basis from it. The register must cycle through all 2^K - 1 non-zero states,
else some seeds would generate the same sequence and the search would waste them, so the
feedback taps come from a table of primitive polynomials (Xilinx XAPP052, the standard
table of maximal-length taps). tests/test_seedlm.py proves the period for every tabulated
K (2..20) from the step's matrix over GF(2) (its order is 2^K - 1), enumerates it for
K <= 16 in the fast tests and for K = 17..20 in the slow ones.

Register convention (Fibonacci form): the state ``s`` is a K-bit integer; one step is
``s' = ((s << 1) | parity(s & tap_mask)) & (2^K - 1)`` where ``tap_mask`` has bit ``t - 1``
set for each tap ``t``. Its recurrence is a_{n+K} = XOR_t a_{n+K-t}: the reciprocal of the
tabulated polynomial, primitive whenever that one is.

Numbers from states: the j-th value (j = 0, 1, ...) is the state after j + 1 steps, mapped
to ``(2 s - 2^K) / 2^K``, an exact dyadic rational in (-1, 1), symmetric about 0. Being
exact in float32 (K <= 20 here) is what lets a decoder reproduce a block bit for bit.

Differences from the SeedLM paper (Shafipour et al. 2024, Appendix A: Table 6 of taps,
Algorithm 1, the K = 3 worked example; tests/test_seedlm.py pins each one). A decoder
written from the paper does not read our seeds:

* Direction: the paper shifts right and feeds back into the top bit (bit K - 1), from
  the bits j with alpha_j = 1 (``PAPER_TAPS``); we shift left and feed back into bit 0.
  For the same polynomial our states are the paper's bit-reversed (``TAPS[K]`` mirrored,
  ``K - t``, equals ``PAPER_TAPS[K]``), so our seed s is the paper's seed reversed.
* Polynomials: for K in ``POLYNOMIAL_DIFFERS_FROM_PAPER`` (12, 13, 14, 19) XAPP052's
  primitive polynomial is not the paper's; both are maximal (the tests prove both), so
  the search space has the same size, but the sequences differ.
* Normalisation: the paper maps a state to (s - 2^(K-1)) / (2^(K-1) - 1), in [-1, 1]; we
  divide by 2^(K-1) (the same as (2 s - 2^K) / 2^K above), in (-1, 1). Ours is exact in
  binary floating point, the paper's is not (its divisor is odd), which is why we keep it;
  the scale difference, a factor 1 - 2^(1-K), is absorbed by the coefficients' exponent.
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
# The paper's Table 6: bit indices j (0-based) with alpha_j = 1, for its right-shifting
# register (see the module docstring); used by the tests that pin the differences.
PAPER_TAPS: dict[int, tuple[int, ...]] = {
    2: (0, 1),
    3: (0, 1),
    4: (0, 1),
    5: (0, 2),
    6: (0, 1),
    7: (0, 1),
    8: (0, 2, 3, 4),
    9: (0, 4),
    10: (0, 3),
    11: (0, 2),
    12: (0, 1, 2, 8),
    13: (0, 1, 2, 5),
    14: (0, 1, 2, 12),
    15: (0, 1),
    16: (0, 1, 3, 12),
    17: (0, 3),
    18: (0, 7),
    19: (0, 1, 2, 5),
    20: (0, 3),
}
POLYNOMIAL_DIFFERS_FROM_PAPER = (12, 13, 14, 19)
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
