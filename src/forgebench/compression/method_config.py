"""The compression methods' configurations, without torch: what the workflow reads to plan.

Why a module of its own: the workflow decides at parse time whether the pipeline's first
stage can start from a compression job's artifact (equal effective configurations), and
every parse (a dry run, an up-to-date rerun) would otherwise pay for importing torch
through the encoders. The encoders (``vptq``, ``seedlm``, ``bitnet``) take their
configurations from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from forgebench.compression import lfsr
from forgebench.errors import ForgebenchError

#: The pipeline benchmark's config key.
KEY = "suites.compression.benchmarks.pipeline"
#: Every lossy method a stage or a compression job can name.
LOSSY = ("fp16", "int8", "bitnet", "seedlm", "vptq")
#: BitNet's default epsilon of the absmean scale.
BITNET_EPS = 1e-5
#: VPTQ: how vectors are cut from a weight matrix, and the codebooks' storage dtypes.
LAYOUTS = ("column", "row")
CODEBOOK_DTYPES = {"float16": np.float16, "float32": np.float32}
#: SeedLM: the seed searches, and the largest LFSR (2^20 seeds: tables of ~200 MB).
SEARCHES = ("bounded", "exhaustive", "pruned")
MAX_LFSR_BITS = 20


def check_method(method: str, key: str) -> None:
    """A config error naming ``key`` unless ``method`` is a known lossy method."""
    if method not in LOSSY:
        raise ForgebenchError(f"{key}.method: {method!r} is not one of {LOSSY}")


@dataclass(frozen=True)
class VPTQConfig:
    """VPTQ parameters and how the k-means runs."""

    vector_length: int = 4  # v
    codebook_size: int = 256  # k
    residual_codebook_size: int = 0  # 0: no residual codebook
    layout: str = "column"
    hessian_weighted: bool = True
    hessian_damp: float = 0.01
    kmeans_iterations: int = 20
    kmeans_tolerance: float = 1e-4  # stop when the loss falls by less than this fraction
    kmeans_sample: int = 0  # vectors per tensor the codebook is fitted on; 0: all of them
    codebook_dtype: str = "float16"
    seed: int = 0
    device: str = "auto"
    assign_chunk: int = 16384
    calibration_tokens: int = 4096
    calibration_context: int = 256

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], key: str = "vptq") -> VPTQConfig:
        """Build from a config section (unknown keys such as ``method`` are ignored),
        naming the key of any bad value."""
        known = set(cls.__dataclass_fields__)
        out = cls(**{k: v for k, v in cfg.items() if k in known})
        out.validate(key)
        return out

    def validate(self, key: str = "vptq") -> None:
        checks = [
            ("vector_length", 1 <= self.vector_length <= 64, "1..64"),
            ("codebook_size", 2 <= self.codebook_size <= 1 << 20, "2..2^20"),
            (
                "residual_codebook_size",
                self.residual_codebook_size == 0 or 2 <= self.residual_codebook_size <= 1 << 20,
                "0 (none) or 2..2^20",
            ),
            ("layout", self.layout in LAYOUTS, f"one of {LAYOUTS}"),
            ("hessian_damp", self.hessian_damp >= 0, ">= 0"),
            ("kmeans_iterations", self.kmeans_iterations >= 1, ">= 1"),
            ("kmeans_tolerance", self.kmeans_tolerance >= 0, ">= 0"),
            ("kmeans_sample", self.kmeans_sample >= 0, ">= 0 (0: all vectors)"),
            ("codebook_dtype", self.codebook_dtype in CODEBOOK_DTYPES, "float16 or float32"),
            ("device", self.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
            ("assign_chunk", self.assign_chunk >= 1, ">= 1"),
            ("calibration_tokens", self.calibration_tokens >= 2, ">= 2"),
            ("calibration_context", self.calibration_context >= 2, ">= 2"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ForgebenchError(
                    f"{key}.{name}: {getattr(self, name)!r} is not allowed ({allowed})"
                )

    @property
    def codebook_bits(self) -> int:
        return 8 * np.dtype(CODEBOOK_DTYPES[self.codebook_dtype]).itemsize

    def as_params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SeedLMConfig:
    """SeedLM parameters (paper defaults) and how the search runs."""

    block_size: int = 8  # C
    latent_dim: int = 3  # P
    lfsr_bits: int = 16  # K
    coeff_bits: int = 4  # b
    exponent_bits: int = 4  # E
    search: str = "bounded"
    prune_top: int = 64
    bound_first: int = 32  # bounded search: seeds per block in its first round
    seed_chunk: int = 1024
    block_chunk: int = 128  # exhaustive search; pruned sizes its own steps
    device: str = "auto"

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], key: str = "seedlm") -> SeedLMConfig:
        """Build from a config section, naming the key of any bad value."""
        known = set(cls.__dataclass_fields__)
        args = {k: v for k, v in cfg.items() if k in known}
        out = cls(**args)
        out.validate(key)
        return out

    def validate(self, key: str = "seedlm") -> None:
        checks = [
            (
                "lfsr_bits",
                lfsr.MIN_BITS <= self.lfsr_bits <= MAX_LFSR_BITS,
                f"{lfsr.MIN_BITS}..{MAX_LFSR_BITS}",
            ),
            ("block_size", 1 <= self.block_size <= 64, "1..64"),
            ("latent_dim", 1 <= self.latent_dim <= self.block_size, "1..block_size"),
            ("coeff_bits", 2 <= self.coeff_bits <= 8, "2..8"),
            ("exponent_bits", 1 <= self.exponent_bits <= 6, "1..6"),
            ("search", self.search in SEARCHES, f"one of {SEARCHES}"),
            ("prune_top", self.prune_top >= 1, ">= 1"),
            ("bound_first", self.bound_first >= 1, ">= 1"),
            ("seed_chunk", self.seed_chunk >= 1, ">= 1"),
            ("block_chunk", self.block_chunk >= 1, ">= 1"),
            ("device", self.device in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ForgebenchError(
                    f"{key}.{name}: {getattr(self, name)!r} is not allowed ({allowed})"
                )
        if self.record_bits > 64:
            raise ForgebenchError(
                f"{key}: a block record of {self.record_bits} bits exceeds 64; lower "
                "lfsr_bits, latent_dim or coeff_bits"
            )

    @property
    def n_seeds(self) -> int:
        return (1 << self.lfsr_bits) - 1

    @property
    def record_bits(self) -> int:
        """Bits stored per block: seed, exponent offset, P coefficients."""
        return self.lfsr_bits + self.exponent_bits + self.latent_dim * self.coeff_bits

    @property
    def bits_per_weight(self) -> float:
        """The configuration's nominal bits per weight (K + P b + E) / C."""
        return self.record_bits / self.block_size

    @property
    def qmin(self) -> int:
        return -(1 << (self.coeff_bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.coeff_bits - 1)) - 1

    def as_params(self) -> dict[str, Any]:
        return asdict(self)


def effective_config(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A stage's or compression method's settings with every default filled in, so two
    configurations that compress alike compare equal (``name`` and ``enabled`` change
    nothing in the result; any other unknown key is compared as written)."""
    method = str(cfg.get("method", ""))
    check_method(method, key)
    out: dict[str, Any] = {k: v for k, v in cfg.items() if k not in ("name", "enabled")}
    out["high_precision_dtype"] = str(cfg.get("high_precision_dtype", "float16"))
    if method == "vptq":
        out.update(VPTQConfig.from_mapping(cfg, key).as_params())
    elif method == "seedlm":
        out.update(SeedLMConfig.from_mapping(cfg, key).as_params())
    elif method == "bitnet":
        out.update(packing=str(cfg.get("packing", "base3")), eps=float(cfg.get("eps", BITNET_EPS)))
    return out


def first_stage_artifact(config: Mapping[str, Any], section: Mapping[str, Any]) -> str | None:
    """The compression job's artifact the chain's first stage can start from: the first
    enabled method of the pipeline's model whose effective configuration equals the first
    stage's (None when compression is off, the model is not compressed or none matches)."""
    from forgebench.workflow import compression_method

    comp = config.get("suites", {}).get("compression", {})
    model = str(section.get("model", ""))
    if not comp.get("enabled", False) or model not in comp.get("models", []):
        return None
    first = effective_config(stage_configs(section)[0], f"{KEY}.stages[0]")
    for key, mcfg in comp.get("methods", {}).items():
        if not mcfg.get("enabled", True):
            continue
        method_cfg = compression_method(config, key)
        if effective_config(method_cfg, f"suites.compression.methods.{key}") == first:
            return f"results/compression/{model}/{key}.fbc"
    return None


def stage_configs(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The lossy stages, each checked for a known method."""
    stages = [dict(s) for s in cfg.get("stages", [])]
    if not stages:
        raise ForgebenchError(f"{KEY}.stages: at least one lossy stage is needed")
    for i, s in enumerate(stages):
        check_method(str(s.get("method", "")), f"{KEY}.stages[{i}]")
    return stages
