"""Byte-level BPE tokenizer trained with HF ``tokenizers``: any UTF-8 text round-trips
(no unknown token), saved as tokenizer.json + tokenizer_config.json for AutoTokenizer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

#: The one special token: document separator, beginning and end of sequence, padding.
EOS_TOKEN = "<|endoftext|>"


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int, model_max_length: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE on ``texts``; vocabulary at most ``vocab_size``
    (fewer when the text has fewer mergeable pairs), id 0 the end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(f"vocab_size {vocab_size} is below the 257 byte-level base tokens")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=[EOS_TOKEN],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=int(model_max_length),
    )
