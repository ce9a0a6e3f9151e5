"""A tiny random Llama model with the project's byte-level BPE tokenizer, for fast tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TEXT = [
    "the cat sat on the mat and the dog sat on the log",
    "what is two plus two? two plus two is four",
    "a bird in the hand is worth two in the bush",
] * 40


def make_tiny_llama(
    path: Path,
    *,
    seed: int = 0,
    texts: Sequence[str] = TEXT,
    vocab_size: int = 320,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 256,
) -> Path:
    """Save a seeded random LlamaForCausalLM and its tokenizer (forgebench.models.tokenizer,
    deterministic for equal ``texts``, so models of several seeds share it) at ``path``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from forgebench.models.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, vocab_size=vocab_size, model_max_length=max_positions)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path
