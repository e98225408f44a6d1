"""Typed run configuration: dataclasses grouped by concern, loaded from YAML plus `a.b=value` overrides.

Every field carries a one-line doc in its metadata; the CLI turns those into `--help` text, so an
option is documented exactly once, next to its default. Unknown keys and values of the wrong type
are errors naming the dotted key, because a silently ignored typo (`train.lr_rate=...`) costs a
whole training run.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge.errors import LmforgeError


def opt(default: Any, doc: str, *, low: float | None = None, high: float | None = None,
        choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its one-line documentation and the values it accepts (`low`..`high`
    inclusive, or one of `choices`), checked when a config is loaded: a bad value is refused before
    any command creates a folder or reads a model."""
    meta = {"doc": doc, "low": low, "high": high, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    path: str = opt("", "pretrained checkpoint: local HF folder, hub id, or a local .gguf file")
    preset: str = opt("", "build a model with RANDOM weights from a size preset (tiny|mini|small) instead of `path`")
    tokenizer: str = opt("", "tokenizer folder or hub id (default: the one saved with `path`; required with `preset`)")
    max_length: int = opt(128, "longest input in tokens; longer texts are truncated", low=1)
    pooling: str = opt("auto", "what a new classification head reads: mean (of the token states) | first (token) | "
                       "auto (mean for a head on a frozen encoder, else first; decoders read their own token)",
                       choices=("auto", "mean", "first"))
    trust_remote_code: bool = opt(False, "allow code shipped with a checkpoint to run (off: safer)")


@dataclass
class DataConfig:
    train: str = opt("", "training data: .csv .tsv .jsonl .json .parquet or a datasets save_to_disk folder")
    validation: str = opt("", "validation data (default: a stratified split of `train`)")
    test: str = opt("", "test data, scored with the best checkpoint at the end (default: validation)")
    text_column: str = opt("text", "column (or .jsonl/.json corpus field) holding the input text")
    label_column: str = opt("label", "column holding the label (a list or separated string for multi-label)")
    encoding: str = opt("utf-8", "text encoding of the data files (e.g. gb18030 for legacy Chinese files)")
    validation_fraction: float = opt(0.1, "share of `train` held out for validation when no validation file is given",
                                     low=0, high=0.9)
    redact_pii: bool = opt(False, "replace e-mails, phones, ID/card numbers, IPs and URL credentials with placeholders")
    key_file: str = opt("", "key file that decrypts data files encrypted with `lmforge encrypt` (FILE.csv.enc ...)")


@dataclass
class TrainConfig:
    epochs: float = opt(0.0, "passes over the training data (0: auto, enough for ~600 optimizer steps, 1-30)", low=0)
    max_steps: int = opt(0, "stop after this many optimizer steps (0: no limit)", low=0)
    max_time: float = opt(0.0, "stop after this many seconds of training, saving a checkpoint (0: no limit)", low=0)
    max_tokens: int = opt(0, "stop after training on this many tokens (0: no limit); a pretraining budget", low=0)
    batch_size: int = opt(0, "examples per optimizer step, summed over accumulation steps and processes "
                          "(0: auto, 8/16/32 below 500/2,000/more examples)", low=0)
    grad_accum: int = opt(1, "split each batch into this many micro-batches (same result, less memory)", low=1)
    gradient_checkpointing: bool = opt(False, "recompute each layer's activations in the backward pass instead "
                                       "of keeping them (same result; LoRA SFT of SmolLM2-135M: 3.2 instead of "
                                       "7.0 GB, 1.2x the time)")
    freeze_embeddings: bool | None = opt(None, "keep the token-embedding table frozen (a large-vocabulary model "
                                         "trains much faster; under DP-SGD fewer parameters are noised, and a "
                                         "decoder whose embeddings are tied to its head needs it); unset: auto, "
                                         "frozen for a pretrained table of 100k+ rows not tied to an output layer")
    freeze_layers: int = opt(0, "freeze the embeddings and the bottom N transformer layers (partial fine-tuning: "
                             "no backward pass below layer N, so a CPU step costs less; all layers: only the "
                             "head trains)", low=0)
    lr: float = opt(0.0, "peak learning rate of AdamW (0: auto from what is trained: 5e-4 LoRA or random "
                   "weights, 1e-4 pretrained with < 60M non-embedding parameters, else 5e-5)", low=0)
    weight_decay: float = opt(0.01, "AdamW weight decay (not applied to biases and norms)", low=0)
    warmup_ratio: float = opt(0.06, "share of the steps spent warming the learning rate up from 0", low=0, high=1)
    schedule: str = opt("linear", "learning-rate decay after warmup: linear|cosine|constant",
                        choices=("linear", "cosine", "constant"))
    max_grad_norm: float = opt(1.0, "clip the gradient norm to this (0: no clipping)", low=0)
    precision: str = opt("auto", "auto (bf16 where the hardware has fast bf16, else fp32) | bf16 | fp32",
                         choices=("auto", "bf16", "fp32"))
    seed: int = opt(42, "seed for initialisation, shuffling and dropout")
    eval_every: int = opt(0, "evaluate every N optimizer steps (0: at the end of every epoch)", low=0)
    save_every: int = opt(0, "write a resumable checkpoint every N steps (0: at each evaluation)", low=0)
    metric: str = opt("", "metric that picks the best checkpoint and drives early stopping (default: the task's)")
    patience: int = opt(3, "stop after this many evaluations without improvement (0: never stop early); "
                        "evaluations of a classifier still predicting one class do not count", low=0)
    log_every: int = opt(10, "log the training loss every N optimizer steps", low=1)
    resume: bool = opt(False, "continue from <output_dir>/checkpoint (same result as an uninterrupted run)")


@dataclass
class ClassificationConfig:
    multi_label: bool = opt(False, "each text may carry several labels (sigmoid per label instead of softmax)")
    label_separator: str = opt("", "split string labels on this for multi-label data, e.g. '|'")
    threshold: float = opt(0.5, "probability above which a label is predicted (multi-label)", low=0, high=1)
    class_weights: bool = opt(False, "weight the loss by inverse class frequency (for imbalanced data)")


@dataclass
class NerConfig:
    scheme: str = opt("bio", "tags the model predicts: bio | bioes (input files may use either; they are converted)",
                      choices=("bio", "bioes"))


@dataclass
class LoraConfig:
    r: int = opt(8, "rank of the low-rank update", low=1)
    alpha: int = opt(16, "scale of the update (alpha / r multiplies it)", low=1)
    dropout: float = opt(0.05, "dropout on the LoRA input", low=0, high=1)
    target_modules: list[str] = opt([], "module names to adapt (empty: every linear layer except the output head)")


@dataclass
class GenerationConfig:
    template: str = opt("plain", "built-in prompt template used when the model has no chat template: plain")
    system: str = opt("", "system prompt put before every conversation (empty: none)")
    question_column: str = opt("", "question column of Q&A data (default: detected)")
    answer_column: str = opt("", "answer column of Q&A data (default: detected)")
    translation_prompt: str = opt("Translate {src} to {tgt}:\n{source}",
                                  "translation data: the prompt, with {source} and the language names {src}/{tgt} "
                                  "(e.g. '{source}' for a Marian model trained on bare sentences)")
    src_lang: str = opt("", "translation data: source language code (zh, en, ...) where a row has no src_lang "
                        "column and no file suffix names it")
    tgt_lang: str = opt("", "translation data: target language code where a row has no tgt_lang column "
                        "and no file suffix names it")
    max_new_tokens: int = opt(128, "longest generated answer in tokens", low=1)
    do_sample: bool = opt(False, "sample instead of greedy decoding")
    temperature: float = opt(0.7, "sampling temperature (with do_sample)", low=0)
    top_p: float = opt(0.9, "nucleus sampling mass (with do_sample)", low=0, high=1)
    top_k: int = opt(50, "sample among the k most likely tokens (with do_sample; 0: off)", low=0)
    repetition_penalty: float = opt(1.0, "penalty > 1 discourages repeating tokens", low=0)
    stop: list[str] = opt([], "extra strings that end an answer (EOS and the template's end-of-turn always do)")
    prompt_lookup: int = opt(0, "greedy: draft this many tokens per step from the prompt (prompt-lookup decoding; "
                             "same tokens, faster when answers copy from their prompt; one prompt at a time; 0: off)", low=0)
    compile: bool = opt(False, "greedy: compile the decoding step (torch.compile, once per shape bucket and process; "
                               "one prompt at a time; pays off in `serve` and long runs)")


@dataclass
class DPConfig:
    target_epsilon: float = opt(0.0, "DP-SGD: train to this privacy budget epsilon over the planned steps (0: off)", low=0)
    delta: float = opt(0.0, "DP-SGD delta (0: 1/(10*N) for N training examples; must stay below 1/N)", low=0, high=1)
    noise_multiplier: float = opt(0.0, "DP-SGD noise std / max_grad_norm, given instead of target_epsilon (0: off)", low=0)
    max_grad_norm: float = opt(1.0, "DP-SGD per-example gradient clipping bound (replaces train.max_grad_norm); with "
                               "clip_quantile > 0 the bound it starts from", low=0)
    clip_quantile: float = opt(0.5, "DP-SGD adaptive clipping: after each step the bound moves toward this quantile "
                               "of the per-example gradient norms, from a noised count (Andrew et al. 2021; the "
                               "epsilon accounts for it); 0: a fixed bound at max_grad_norm", low=0, high=1)
    accountant: str = opt("rdp", "privacy accountant: rdp | prv", choices=("rdp", "prv"))


@dataclass
class PrivacyConfig:
    dp: DPConfig = field(default_factory=DPConfig)


@dataclass
class PretrainConfig:
    mlm_probability: float = opt(0.15, "mlm: share of tokens masked (of those, 80% [MASK], 10% random, 10% kept)",
                                 low=0, high=1)
    whole_word_mask: bool = opt(False, "mlm: mask whole words (Chinese segmented with jieba) instead of single tokens")
    eval_blocks: int = opt(512, "validation blocks scored at each evaluation (fixed masks, so losses compare)", low=1)
    dropout: float = opt(0.0, "dropout rate while pretraining (a short run sees each text about once, so dropout "
                         "only slows it); the saved config keeps the model's own rate for fine-tuning", low=0, high=1)
    workers: int = opt(1, "processes that tokenise the corpus into the token file (the file does not depend on it)",
                       low=1)


@dataclass
class DistillConfig:
    teacher: str = opt("", "distill: teacher model folder, a trained classifier (e.g. runs/x/best)")
    student_layers: int = opt(0,
                              "distill: student = the teacher keeping every k-th of its layers, this many "
                              "(0: model.preset/model.path)", low=0)
    temperature: float = opt(2.0, "distill: softmax temperature of the soft-label term (higher: softer targets)", low=0)
    alpha: float = opt(0.5, "distill: weight of the soft-label (teacher) term; 1 - alpha weights the hard labels",
                       low=0, high=1)
    unlabelled: str = opt("", "distill: file of extra texts (text column) that feed the soft-label term only")


@dataclass
class Config:
    task: str = opt("classification", "what to train: classification | ner (token tagging) | generation | pretrain")
    objective: str = opt("mlm", "pretrain: mlm (masked LM, BERT-style encoder) | clm (causal LM, Llama-style decoder)",
                         choices=("mlm", "clm"))
    method: str = opt("full", "full: train every weight | lora: train low-rank adapters (peft)", choices=("full", "lora"))
    output_dir: str = opt("runs/default", "where the run writes checkpoints, logs, metrics and the best model")
    overwrite: bool = opt(False, "allow writing into a non-empty output_dir that is not being resumed")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    ner: NerConfig = field(default_factory=NerConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


def load(path: str | Path | None = None, overrides: list[str] | None = None, cls: type = Config) -> Any:
    """Build a config from an optional YAML file and `a.b=value` overrides (later wins)."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LmforgeError(f"override '{item}' is not of the form key=value")
        _set_dotted(raw, key.strip(), _RawText(value))
    return _build(cls, raw, prefix="")


def with_keys(cfg: Any, values: dict[str, Any]) -> Any:
    """`cfg` with dotted keys set to `values` (typed and checked like a YAML file's)."""
    raw = to_dict(cfg)
    for key, value in values.items():
        _set_dotted(raw, key, value)
    return _build(type(cfg), raw, prefix="")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config, for saving and logging."""
    return dataclasses.asdict(cfg)


def save(cfg: Any, path: Path) -> None:
    """Write the resolved config as YAML so a run can be reproduced from its folder alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), allow_unicode=True, sort_keys=False), encoding="utf-8")


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, doc, default) for every option: the source of `--help`."""
    rows: list[tuple[str, str, Any]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(describe(hints[f.name], key + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            rows.append((key, f.metadata.get("doc", ""), default))
    return rows


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.safe_load`, except that a key given twice in one mapping is an error: PyYAML keeps the
    last value silently, so the line a user edits may be the one that is ignored."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


class _RawText(str):
    """A value typed on the command line: converted by the target field's type, not by YAML rules."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LmforgeError(f"config file not found: {path}")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise LmforgeError(f"{path}: expected a mapping of options at the top level")
    return data


def read_yaml(path: Path) -> Any:
    """A YAML file lmforge reads (a config, a search space): any mistake in it is one error naming
    path:line:column, and a key given twice is refused (`UniqueKeyLoader`)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except UnicodeDecodeError as exc:
        raise LmforgeError(f"{path}: not a UTF-8 text file (byte {exc.start}): is it really a YAML config?") from None
    except yaml.YAMLError as exc:
        raise LmforgeError(f"{_yaml_where(path, exc)}: not valid YAML: {_yaml_problem(exc)}") from None


def _yaml_where(path: Path, exc: yaml.YAMLError) -> str:
    """`path:line:column` of a YAML error (PyYAML counts from 0), or the path alone."""
    mark = getattr(exc, "problem_mark", None)
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's reason on one line (its str() adds context lines and a snippet of the file)."""
    problem = getattr(exc, "problem", None)
    text = f"{problem} ({getattr(exc, 'context', None)})" if problem and getattr(exc, "context", None) else problem
    return (text or str(exc)).replace("\n", " ").replace("\t", "\\t")


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LmforgeError(f"override '{key}': '{part}' is a value, not a group of options")
    node[leaf] = value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    unknown = sorted(set(raw) - names)
    if unknown:
        valid = ", ".join(f"{prefix}{n}" for n in sorted(names))
        raise LmforgeError(f"unknown config key '{prefix}{unknown[0]}' (valid keys here: {valid})")
    values = {}
    for name, value in raw.items():
        key, hint = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise LmforgeError(f"config key '{key}' is a group of options; set '{key}.<option>' instead")
            values[name] = _build(hint, value, key + ".")
        else:
            values[name] = _check(key, fields[name].metadata, _coerce(key, hint, value))
    return cls(**values)


def _check(key: str, meta: Any, value: Any) -> Any:
    """Refuse a value outside what the field accepts, naming the key (NaN and infinities too: a
    learning rate of nan trains nothing and says nothing)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise LmforgeError(f"config key '{key}': expected a finite number, got {value!r}")
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if low is not None and value < low:
        raise LmforgeError(f"config key '{key}': must be at least {low:g}, got {value!r}")
    if high is not None and value > high:
        raise LmforgeError(f"config key '{key}': must be at most {high:g}, got {value!r}")
    if choices and value not in choices:
        raise LmforgeError(f"config key '{key}': must be one of {', '.join(choices)}, got {value!r}")
    return value


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Convert a YAML or command-line value to the field's type, or fail naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, _RawText) and value.lower() in ("", "null", "none")):
            return None
        return _coerce(key, inner[0], value)
    if origin is list:
        if isinstance(value, _RawText):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise LmforgeError(f"config key '{key}': expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (str,)
        return [_coerce(key, item, v) for v in value]
    try:
        return _SCALARS[hint](value)
    except (ValueError, TypeError):
        raise LmforgeError(f"config key '{key}': expected {hint.__name__}, got {value!r}") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(value)
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(value)
    return float(value)  # YAML reads "3e-5" as a string; float() accepts it


def _to_str(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise TypeError(value)
    return str(value)


_SCALARS: dict[Any, Any] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}
