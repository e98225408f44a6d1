"""`lmforge distill --teacher runs/x/best --student-layers 2 [CONFIG] key=value ... --out runs/x/student`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.config import Config
from lmforge.errors import LmforgeError

if TYPE_CHECKING:
    from lmforge.inference import Loaded
    from lmforge.run import Prepared
    from lmforge.tasks.distillation import Distillation
    from lmforge.train.loop import FitResult


def run(cfg: Config, teacher: str | None = None, student_layers: int | None = None,
        out: str | None = None) -> dict[str, Any]:
    """Distil the teacher into a student per `cfg` (flags override it); returns the student's test metrics."""
    from lmforge.compress.train import fit_to_folder
    from lmforge.run import prepare
    from lmforge.tasks.distillation import Distillation
    from lmforge.train.parallel import on_main_process

    cfg = _with_flags(cfg, teacher, student_layers, out)
    task = Distillation(cfg)
    prepared = prepare(cfg, task)  # loads the teacher and checks every row before anything is written
    if task.unlabelled is not None:
        prepared.train = [*prepared.train, *task.encode(task.unlabelled, prepared.tokenizer)]
    result, student = fit_to_folder(prepared, Path(cfg.output_dir))
    # one process scores the student and writes the report; the others of a launch wait for it
    return on_main_process(lambda: _score(cfg, task, prepared, result, student), {})


def _score(cfg: Config, task: Distillation, prepared: Prepared, result: FitResult, student: Loaded) -> dict[str, Any]:
    """The student's test metrics beside the teacher's, and how often the two agree."""
    from lmforge.run import write_evaluation
    from lmforge.tasks.distillation import agreement

    data = prepared.data
    teacher_probs = task.teacher_probs(data.test)
    agree = agreement(task.base, student.outputs(data.test)["probs"], teacher_probs)
    teacher_metrics = task.base.metrics({"probs": teacher_probs}, task.base.targets(data.test))
    extra = {"teacher_agreement": agree,
             "teacher": {k: v for k, v in teacher_metrics.items() if isinstance(v, float)},
             "parameters": _parameters(student.model), "teacher_parameters": _parameters(task.teacher.model),
             "distill": dataclasses.asdict(cfg.distill)}
    notes = [f"student of {cfg.distill.teacher}: {_describe(cfg)}, {extra['parameters']:,} parameters "
             f"(teacher: {extra['teacher_parameters']:,})",
             f"agrees with the teacher on {agree:.1%} of {data.test.source}; teacher accuracy "
             f"{teacher_metrics.get('accuracy', float('nan')):.4f}",
             f"training stopped: {result.stopped} after {result.steps} steps ({len(prepared.train)} examples, "
             f"{len(task.unlabelled.texts) if task.unlabelled else 0} of them unlabelled)"]
    return write_evaluation(student, data.test, Path(cfg.output_dir), train=data.train, history=result.history,
                            title=f"distill: {Path(cfg.output_dir).name}", notes=notes, extra=extra)


def _with_flags(cfg: Config, teacher: str | None, student_layers: int | None, out: str | None) -> Config:
    """The command-line flags written into the config, so the saved config tells the whole story."""
    from lmforge.tasks import build_task
    from lmforge.tasks.contracts import ClassifiesSequences

    if not isinstance(build_task(cfg.task, cfg), ClassifiesSequences):
        raise LmforgeError(f"distill trains classifiers; task '{cfg.task}' does not classify sequences")
    d = cfg.distill
    distill = dataclasses.replace(d, teacher=d.teacher if teacher is None else teacher,
                                  student_layers=d.student_layers if student_layers is None else student_layers)
    # a student cut from the teacher has the teacher as its model; record that, not the config's preset
    model = dataclasses.replace(cfg.model, path=distill.teacher, preset="",
                                tokenizer="") if distill.student_layers else cfg.model
    return dataclasses.replace(cfg, distill=distill, model=model, output_dir=out if out is not None else cfg.output_dir)


def _describe(cfg: Config) -> str:
    if cfg.distill.student_layers:
        return f"{cfg.distill.student_layers} of its layers"
    return f"preset '{cfg.model.preset}' (random initial weights)" if cfg.model.preset else cfg.model.path


def _parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
