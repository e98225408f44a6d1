"""Load a saved lmforge model folder and predict with it: `lmforge.load(path).predict([...])`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmforge import config as config_mod
from lmforge.config import Config
from lmforge.compress.quantize import load_int8, read_spec
from lmforge.errors import LmforgeError
from lmforge.registry import build_task
from lmforge.tasks.base import Outputs
from lmforge.train.checkpoint import CONFIG_FILE
from lmforge.train.device import pick_device, resolve_precision
from lmforge.train.infer import run_forward


@dataclass
class Loaded:
    """A model folder ready to use: its run config, task, model and tokenizer on the chosen device."""

    cfg: Config
    task: Any
    model: Any
    tokenizer: Any
    device: torch.device
    precision: str
    batch_size: int = 64

    def outputs(self, split: Any) -> Outputs:
        """The task's per-example outputs on a split (see the task's `read_split`/`read_texts`)."""
        features = self.task.encode(split, self.tokenizer)
        return run_forward(self.task, self.model, features, self.batch_size, self.device, self.precision)

    def generate(self, questions: list[str]) -> list[str]:
        """Answers to single-turn questions, formatted with the model's saved chat template."""
        from lmforge.generation import generate

        split = self.task.read_list(questions)
        return generate(self.model, self.tokenizer, split.conversations, self.cfg.generation, self.device,
                        self.precision, batch_size=self.batch_size)

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Predictions for raw texts, in order."""
        if isinstance(texts, str):
            texts = [texts]
        empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if empty:
            raise LmforgeError(f"input {empty[0]} is empty or not a string")
        if not texts:
            return []
        return self.task.predictions(self.outputs(self.task.read_list(texts)))


def load(path: str | Path, precision: str = "auto", batch_size: int = 64, template: str | None = None) -> Loaded:
    """Load a model folder written by lmforge (or a plain HF folder with a classification head).

    `template` (a built-in name or a .jinja file) replaces a generation model's saved chat template,
    with a warning when it differs.
    """
    import transformers

    from lmforge.models.load import as_folder

    folder = Path(as_folder(str(path)))  # a .gguf file becomes its cached HF folder
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise LmforgeError(f"not a model folder (no config.json or adapter_config.json): {folder}")
    cfg = run_config(folder)
    task = build_task(cfg.task, cfg)
    int8 = read_spec(folder)  # an int8 folder of `lmforge quantize`: its own loader, CPU kernels
    auto_class = getattr(transformers, task.auto_class)
    model = load_int8(auto_class, folder, int8) if int8 else _hub_free_load(auto_class, folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    device = torch.device("cpu") if int8 else pick_device()
    # int8-dynamic quantizes fp32 activations; a folder stored in bf16 runs in bf16 whatever is asked
    precision = "fp32" if int8 and int8["method"] == "int8-dynamic" else resolve_precision(precision, device)
    precision = "bf16" if next(model.parameters()).dtype == torch.bfloat16 else precision
    # Inference keeps no master weights, so bf16 weights outright: no per-call casts under autocast.
    # (Int8 buffers keep their dtype under .to(dtype): only scales, norms and biases become bf16.)
    model.to(device, dtype=torch.bfloat16 if precision == "bf16" else None).eval()
    task.bind(model, tokenizer)
    if template:
        _use_template(task, tokenizer, template, folder)
    return Loaded(cfg, task, model, tokenizer, device, precision, batch_size)


def _use_template(task: Any, tokenizer: Any, template: str, folder: Path) -> None:
    from lmforge.generation import use_template

    if task.name != "generation":
        raise LmforgeError(f"{folder} is a {task.name} model; a chat template applies to generation models only")
    use_template(tokenizer, template, str(folder))


def run_config(folder: Path) -> Config:
    """The config saved with the model, pointed at this folder; defaults for a plain HF folder."""
    saved = folder / CONFIG_FILE
    cfg = config_mod.load(saved) if saved.is_file() else Config(task=_task_of_plain_folder(folder))
    cfg.model.path, cfg.model.preset, cfg.model.tokenizer = str(folder), "", ""
    return cfg


def _task_of_plain_folder(folder: Path) -> str:
    """A folder not written by lmforge: causal-LM architectures generate, everything else classifies."""
    config_file = folder / "config.json"
    architectures = json.loads(config_file.read_text()).get("architectures") or [] if config_file.is_file() else []
    return "generation" if any(a.endswith("ForCausalLM") for a in architectures) else "classification"


def _hub_free_load(auto_class: Any, folder: Path) -> Any:
    """Safetensors only (no pickle), and no code from the folder runs."""
    try:
        return auto_class.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"could not load the model in {folder}: {exc}") from None
