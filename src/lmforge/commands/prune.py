"""`lmforge prune runs/x/best --heads 0.3 --recover-steps 200 --out runs/x/pruned [key=value ...]`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge import config as config_mod
from lmforge.config import Config
from lmforge.errors import LmforgeError
from lmforge.models.folder import CONFIG_FILE
from lmforge.outputs import Output, check_outputs
from lmforge.tasks import build_task
from lmforge.tasks.contracts import ClassifiesSequences


def run(model: str, out: str, heads: float = 0.3, recover_steps: int = 200, linear: float = 0.0,
        importance_batches: int = 8, overrides: list[str] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Prune the classifier in folder `model` into folder `out`; returns the pruned model's test metrics.

    Data and training options come from the model's saved run config, changed by `overrides`.
    """
    from lmforge.compress import prune
    from lmforge.compress.train import fit_to_folder, save_to_folder
    from lmforge.run import prepare, write_evaluation
    from lmforge.runtime.device import pick_device
    from lmforge.runtime.forward import run_forward
    from lmforge.tasks.distillation import agreement

    cfg = _config(Path(model), out, recover_steps, [*(overrides or []), f"overwrite={overwrite}"])
    check_outputs([Output(out, "--out", "folder")], [model, cfg.data.train, cfg.data.validation, cfg.data.test],
                  overwrite)
    task = build_task(cfg.task, cfg)
    if not isinstance(task, ClassifiesSequences):
        raise LmforgeError(f"prune works on sequence classifiers; {model} is a {cfg.task} model")
    prepared = prepare(cfg, task)
    net, tokenizer, data = prepared.model.to(pick_device()), prepared.tokenizer, prepared.data
    original = run_forward(task, net, task.encode(data.test, tokenizer), 64, pick_device(),
                           prepared.precision)["probs"]

    importance = prune.head_importance(task, net, prepared.train, importance_batches, cfg.train.batch_size,
                                       cfg.train.seed)
    chosen = prune.choose_heads(importance, heads)
    masks = prune.prune_heads(net, chosen)
    if linear:
        masks = prune.merge(masks, prune.prune_linear(net, linear))
    hooks = prune.keep_zero(masks)
    if recover_steps:
        result, pruned = fit_to_folder(prepared, Path(out))
        history, stopped = result.history, f"recovery: {result.stopped} after {result.steps} steps"
    else:
        pruned, history, stopped = save_to_folder(cfg, net, tokenizer, Path(out)), None, "no recovery fine-tune"
    for hook in hooks:
        hook.remove()

    agree = agreement(task, pruned.outputs(data.test)["probs"], original)
    n_pruned, total = sum(len(h) for h in chosen.values()), importance.numel()
    extra = {"pruned_heads": {str(k): v for k, v in chosen.items()}, "heads_pruned": n_pruned, "heads_total": total,
             "linear_sparsity": linear, "original_agreement": agree,
             "head_importance": [[round(float(x), 4) for x in row] for row in importance]}
    notes = [f"pruned {n_pruned} of {total} attention heads of {model} (zeroed; same size and speed)"
             + (f", and {linear:.0%} of each layer's linear weights by magnitude" if linear else ""),
             f"{stopped}; agrees with the original on {agree:.1%} of {data.test.source}"]
    return write_evaluation(pruned, data.test, Path(out), train=data.train, history=history,
                            title=f"prune: {Path(out).name}", notes=notes, extra=extra)


def _config(folder: Path, out: str, recover_steps: int, overrides: list[str]) -> Config:
    """The model's run config, pointed at the model and `out`, with a `recover_steps` budget; overrides win."""
    if not (folder / "config.json").is_file():
        raise LmforgeError(f"not a model folder (no config.json): {folder}")
    saved = folder / CONFIG_FILE
    budget = [f"train.max_steps={recover_steps}", f"train.epochs={max(recover_steps, 1)}",
              f"train.eval_every={max(recover_steps // 4, 1)}"]  # epochs only bound; the steps decide
    return config_mod.load(saved if saved.is_file() else None,
                           [f"model.path={folder}", "model.preset=", "model.tokenizer=", f"output_dir={out}",
                            "train.resume=false", *budget, *overrides])
