"""The cognate architecture: a Llama-style causal LM fixed by config, its exact parameter
count by formula, and a seeded builder, so every stage measures the same model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from forgebench.errors import ForgebenchError

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

#: Parameters of the original system's cognate model; ours must be within 0.5% of it.
TARGET_PARAMS = 25_083_528
TARGET_TOLERANCE = 0.005

#: The default cognate architecture: 25,075,584 parameters (-0.032% of the target).
#: head_dim 64, grouped-query attention (2 KV heads), SwiGLU MLP, untied embeddings: an
#: untied 16k vocabulary costs less compute per token than a tied 32k one at the same
#: parameter count (measured ~960 vs ~700 training tokens/s on 2 cores) and suits a few MB
#: of training text.
COGNATE_ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 384,
    "num_layers": 10,
    "num_heads": 6,
    "num_kv_heads": 2,
    "intermediate_size": 768,
    "vocab_size": 16000,
    "tie_embeddings": False,
    "max_positions": 2048,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.02,
}


@dataclass(frozen=True)
class Architecture:
    """What fixes a Llama-style model's shapes (and so its parameter count)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    max_positions: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "architecture") -> Architecture:
        """Build from a config mapping (missing keys take the cognate defaults); a bad
        combination raises ForgebenchError naming ``key``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ForgebenchError(f"{key}: unknown keys {unknown}; allowed: {sorted(names)}")
        merged = {**COGNATE_ARCHITECTURE, **dict(cfg)}
        arch = cls(**merged)
        arch.check(key)
        return arch

    def check(self, key: str = "architecture") -> None:
        """Raise ForgebenchError for shapes Llama cannot build."""
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads"):
            if int(getattr(self, name)) < 1:
                raise ForgebenchError(f"{key}.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("intermediate_size", "vocab_size", "max_positions"):
            if int(getattr(self, name)) < 1:
                raise ForgebenchError(f"{key}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ForgebenchError(
                f"{key}.hidden_size ({self.hidden_size}) must be a multiple of "
                f"{key}.num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ForgebenchError(
                f"{key}.num_heads ({self.num_heads}) must be a multiple of "
                f"{key}.num_kv_heads ({self.num_kv_heads})"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ForgebenchError(
                f"{key}: head size hidden_size/num_heads = {self.hidden_size // self.num_heads} "
                "must be even (rotary embeddings rotate pairs)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def param_count(self) -> int:
        """Exact parameter count of LlamaForCausalLM with these shapes (no biases).

        embeddings V*d (+ V*d untied LM head); per layer q and o d*d each, k and v
        d*kv*head_dim each, SwiGLU MLP 3*d*I, two RMSNorm weights d; final norm d.
        """
        d, v = self.hidden_size, self.vocab_size
        kv = self.num_kv_heads * self.head_dim
        attention = 2 * d * d + 2 * d * kv
        layer = attention + 3 * d * self.intermediate_size + 2 * d
        embeddings = v * d * (1 if self.tie_embeddings else 2)
        return embeddings + self.num_layers * layer + d

    def llama_config(self, **extra: Any) -> LlamaConfig:
        """The transformers config for these shapes (``extra``: token ids and the like)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=self.tie_embeddings,
            rms_norm_eps=self.rms_norm_eps,
            initializer_range=self.initializer_range,
            rope_parameters={"rope_type": "default", "rope_theta": float(self.rope_theta)},
            **extra,
        )


def build_model(arch: Architecture, seed: int, **config_extra: Any) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM, seeded without touching the global RNG."""
    import torch
    from transformers import LlamaForCausalLM

    config = arch.llama_config(**config_extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = LlamaForCausalLM(config)
    model.eval()
    return model


def count_parameters(model: Any) -> int:
    """Parameters actually held by ``model`` (a tied weight counted once)."""
    return sum(p.numel() for p in model.parameters())


def parameter_bytes(model: Any) -> int:
    """Bytes the parameters occupy in memory (a tied weight counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def shape_signature(model: Any) -> str:
    """sha256 of the model's config and every parameter's name, shape and dtype: equal
    signatures mean identical architectures."""
    config = model.config.to_dict()
    config.pop("transformers_version", None)
    shapes = [(n, list(p.shape), str(p.dtype)) for n, p in model.named_parameters()]
    blob = json.dumps({"config": config, "shapes": shapes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def max_abs_weight_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between corresponding parameters of two models."""
    import torch

    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys():
        raise ValueError("models have different parameter names")
    with torch.no_grad():
        return max(float((pa[k] - pb[k]).abs().max()) for k in pa)
