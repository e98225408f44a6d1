"""One run, prepared and trained the same way everywhere: commands, compression, tests and benches.

    prepared = prepare(cfg)      # task, checked config, validated data, model, encoded splits
    result = fit_prepared(prepared)  # the one loop, in output_dir (or another run folder)
    prepared, result = train(cfg)    # both

Everything that can be wrong with a run (a key that does not apply to the task, a bad row, an
output_dir that would lose data) is found in `prepare`, before anything is written.
`write_evaluation` scores a loaded model into a folder (metrics.json + report.html), as
`finetune`, `evaluate`, `distill` and `prune` do.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge import config as config_mod
from lmforge.atomic import write_json
from lmforge.config import Config
from lmforge.data.translation import input_paths
from lmforge.errors import LmforgeError
from lmforge.evaluate.report import write_report
from lmforge.inference import Loaded
from lmforge.log import logger
from lmforge.outputs import Output, check_outputs
from lmforge.runtime.collate import Features
from lmforge.runtime.device import pick_device, resolve_precision
from lmforge.tasks import build_task
from lmforge.tasks.contracts import Baselined, Data, Examples, Explains, Model, Task
from lmforge.train import recipe
from lmforge.train.freeze import freeze_bottom_layers, freeze_embeddings
from lmforge.train.loop import FitResult, Watch, fit
from lmforge.train.parallel import on_main_process, wait_for_all

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Worst errors a classification report explains, and how: occlusion needs no gradients (so it works
# on int8 folders too) and costs one batched forward pass per token, about a second for five texts.
REPORT_EXPLAINED = 5
REPORT_METHOD = "occlusion"
# Config groups only some tasks read; a task lists the ones it reads in `config_groups`.
TASK_GROUPS = ("classification", "ner", "lora", "generation", "pretrain", "distill")


@dataclass
class Prepared:
    """A run ready for the loop."""

    cfg: Config
    task: Task[Any]
    data: Data[Any]
    model: Model
    tokenizer: PreTrainedTokenizerBase
    train: Features
    validation: Features
    precision: str  # resolved once for the whole run: "bf16" | "fp32"


def prepare(cfg: Config, task: Task[Any] | None = None) -> Prepared:
    """Build the task (or take `task`, built from `cfg` by the caller: distillation trains a
    classifier through its own task), refuse keys it does not read, validate the data, check
    output_dir, build and bind the model, freeze what the config freezes, and encode the training and validation splits."""
    task = task or build_task(cfg.task, cfg)
    check_applies(cfg, task)
    data = task.load_data()  # every data error surfaces here, before output_dir is touched
    check_output_dir(cfg)
    with _removed_if_failing(Path(cfg.output_dir)):  # encoding may write (a pretraining token file), then refuse
        model, tokenizer = task.build_model(data)
        check_max_length(cfg, model)
        task.bind(model, tokenizer)
        train, validation = task.encode(data.train, tokenizer), task.encode(data.validation, tokenizer)
        cfg = recipe.resolve(cfg, model, len(train))
        freeze(cfg, model)
    precision = resolve_precision(cfg.train.precision, pick_device())
    return Prepared(cfg, task, data, model, tokenizer, train, validation, precision)


@contextmanager
def _removed_if_failing(folder: Path) -> Iterator[None]:
    """Remove `folder` if it did not exist before and the block fails: a refused run leaves nothing."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def fit_prepared(prepared: Prepared, output_dir: Path | None = None, watch: Watch | None = None) -> FitResult:
    """Save the resolved config in the run folder (`output_dir`, default the config's) and train there."""
    cfg = prepared.cfg if output_dir is None else dataclasses.replace(prepared.cfg, output_dir=str(output_dir))
    wait_for_all()  # under torchrun, no process writes before every one has checked output_dir
    on_main_process(lambda: config_mod.save(cfg, Path(cfg.output_dir) / "config.yaml"), None)
    return fit(cfg, prepared.task, prepared.model, prepared.tokenizer, prepared.train, prepared.validation,
               prepared.precision, watch)


def train(cfg: Config, resume: bool = False) -> tuple[Prepared, FitResult]:
    """`prepare` then `fit_prepared`; `resume` (the commands' --resume flag) sets train.resume."""
    if resume:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=True))
    prepared = prepare(cfg)
    return prepared, fit_prepared(prepared)


def freeze(cfg: Config, model: Model) -> None:
    """`train.freeze_embeddings` / `train.freeze_layers`, before the loop builds its optimizer (frozen
    parameters get no optimizer state) and before anything is written (too many layers is refused)."""
    if cfg.train.freeze_embeddings:
        logger.info(f"train.freeze_embeddings: {freeze_embeddings(model):,} embedding parameters frozen")
    if cfg.train.freeze_layers:
        frozen = freeze_bottom_layers(model, cfg.train.freeze_layers)
        logger.info(f"train.freeze_layers: embeddings and the bottom {cfg.train.freeze_layers} layers frozen "
                    f"({frozen:,} parameters)")


def check_max_length(cfg: Config, model: Model) -> None:
    """Refuse a model.max_length beyond the model's table of positions: the first text that long would
    stop training halfway with an index error (a preset's table is sized to model.max_length)."""
    import torch

    positions = getattr(model.config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return
    # A position table with a padding row (RoBERTa, XLM-R) counts from padding_idx + 1: 514 rows hold 512.
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == positions]
    positions -= next((m.padding_idx + 1 for m in tables if m.padding_idx is not None), 0)
    if cfg.model.max_length > positions:
        raise LmforgeError(f"config key 'model.max_length': {cfg.model.max_length} is above the {positions} positions "
                           f"the model has (max_position_embeddings); set model.max_length={positions} or less")


def check_applies(cfg: Config, task: Task[Any]) -> None:
    """Refuse a setting the task would silently ignore (`method=lora` for a classifier, a
    `generation.*` key for pretraining): a key that has no effect misleads the run's record."""
    defaults = Config()
    for group in TASK_GROUPS:
        if group in task.config_groups:
            continue
        given, default = config_mod.to_dict(getattr(cfg, group)), config_mod.to_dict(getattr(defaults, group))
        changed = [key for key in given if given[key] != default[key]]
        if changed:
            raise LmforgeError(f"config key '{group}.{changed[0]}' does not apply to task={cfg.task} "
                               f"(it reads: {', '.join(task.config_groups) or 'no task-specific group'})")
    if cfg.method != defaults.method and "lora" not in task.config_groups:
        raise LmforgeError(f"method={cfg.method} does not apply to task={cfg.task}: only full fine-tuning is built")
    if cfg.objective != defaults.objective and "pretrain" not in task.config_groups:
        raise LmforgeError(f"objective={cfg.objective} applies to task=pretrain only")


def check_output_dir(cfg: Config) -> None:
    """Refuse to mix a new run into a folder holding another (unless resuming or told to overwrite),
    and an output_dir that is, holds or lies inside one of the run's inputs."""
    data = [path for spec in (cfg.data.train, cfg.data.validation, cfg.data.test) for path in input_paths(spec)]
    inputs = [*data, cfg.data.key_file, cfg.model.path, cfg.model.tokenizer, cfg.distill.teacher,
              cfg.distill.unlabelled]
    if cfg.train.resume and not (Path(cfg.output_dir) / "checkpoint" / "state.json").is_file():
        raise LmforgeError(f"--resume: no checkpoint in {Path(cfg.output_dir) / 'checkpoint'} to continue from")
    check_outputs([Output(cfg.output_dir, "output_dir", "folder")], inputs, cfg.overwrite or cfg.train.resume,
                  hint="continue it with --resume, or replace it with overwrite=true")


def training_split(loaded: Loaded) -> Any:
    """The training split a model was fitted on, for its task's baseline; None when the task has no
    baseline or its training file is gone."""
    if not isinstance(loaded.task, Baselined):
        return None
    if not loaded.cfg.data.train or not all(Path(p).exists() for p in input_paths(loaded.cfg.data.train)):
        logger.info("training data of this model not found: report without the baseline")
        return None
    try:
        return loaded.task.load_data().train
    except LmforgeError as exc:
        logger.warning(f"training data could not be re-read for the baseline: {exc}")
        return None


def write_evaluation(loaded: Loaded, split: Any, out: Path, *, train: Any = None,
                     history: list[dict[str, Any]] | None = None, title: str = "evaluation",
                     notes: list[str] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of `loaded` on `split` (and of the task's baseline fitted on `train`), written to `out`."""
    task = loaded.task
    metrics, errors = task.report(loaded, split)
    _explain_errors(loaded, errors)
    metrics["precision_mode"] = loaded.precision
    for warning in metrics.get("warnings", []):  # e.g. a collapsed classifier: said first, in the log and the report
        logger.warning(f"{title}: {warning}")
    notes = [*metrics.get("warnings", []), *(notes or [])]
    metrics.update(extra or {})
    base = task.baseline(train, split)[0] if train is not None and isinstance(task, Baselined) else None
    if base is not None:
        metrics["baseline"] = base
    write_json(out / "metrics.json", metrics)
    write_report(out / "report.html", title=title, metrics=metrics, history=history, errors=errors,
                 baseline=base, notes=notes)
    shown = ("accuracy", "f1_macro", "perplexity", "token_f1", "rouge_l", "bleu", "chrf")
    summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in shown if isinstance(metrics.get(k), float))
    logger.info(f"{title}: {summary}; wrote {out / 'metrics.json'} and {out / 'report.html'}")
    return metrics


def _explain_errors(loaded: Loaded, errors: Examples) -> None:
    """Add the words that drove each of the first REPORT_EXPLAINED wrong predictions (classifiers only)."""
    if not errors or not isinstance(loaded.task, Explains):
        return
    shown = errors[:REPORT_EXPLAINED]
    for error, explanation in zip(shown, loaded.explanations([e["text"] for e in shown], REPORT_METHOD,
                                                             faithfulness=False)):
        error["words"], error["method"] = explanation.targets[0].words, explanation.method


def read_history(log: Path) -> list[dict[str, Any]]:
    """The records of a run's train_log.jsonl."""
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
