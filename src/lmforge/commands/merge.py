"""`lmforge merge MODEL --out DIR`: fold LoRA adapters into the base weights."""

from __future__ import annotations

from pathlib import Path

from lmforge.models.lora import merge_folder
from lmforge.outputs import Output, check_outputs


def run(model: str, out: str, overwrite: bool = False) -> None:
    """A plain HF folder servable without peft (vllm, transformers) from an adapter folder."""
    check_outputs([Output(out, "--out", "folder")], [model], overwrite)
    merge_folder(Path(model), Path(out))
