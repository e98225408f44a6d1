"""Size presets for models built from scratch (random weights), as transformers configs.

Building from a transformers config class means the result is a standard HF folder that any
transformers user can load; lmforge adds nothing to the architecture.
"""

from __future__ import annotations

from typing import Any

from lmforge.errors import LmforgeError

ENCODER_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256},
    "mini": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
    "small": {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048},
}

DECODER_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 192},
    "mini": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
             "intermediate_size": 768},
    "small": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
              "intermediate_size": 1536},
}


def decoder_config(preset: str, vocab_size: int, tokenizer: Any, max_length: int) -> Any:
    """A Llama config of the named size for this tokenizer (RoPE, SwiGLU, RMSNorm, GQA)."""
    from transformers import LlamaConfig

    if preset not in DECODER_PRESETS:
        raise LmforgeError(f"unknown model.preset '{preset}' (available: {', '.join(DECODER_PRESETS)})")
    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max(2048, max_length),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **DECODER_PRESETS[preset],
    )


def encoder_config(preset: str, vocab_size: int, pad_token_id: int, max_length: int, **extra: Any) -> Any:
    """A BERT config of the named size for this tokenizer."""
    from transformers import BertConfig

    if preset not in ENCODER_PRESETS:
        raise LmforgeError(f"unknown model.preset '{preset}' (available: {', '.join(ENCODER_PRESETS)})")
    return BertConfig(
        vocab_size=vocab_size,
        pad_token_id=pad_token_id,
        max_position_embeddings=max(512, max_length),
        **ENCODER_PRESETS[preset],
        **extra,
    )
