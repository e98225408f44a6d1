"""Run by test_distributed under 1 or 2 processes: trains the tiny model (no dropout) once per run.

    python dist_worker.py [--fsdp-on-cpu] OUT_FOLDER key=value ... [--then key=value ...] ...

Each `--then` group starts another run in the same processes, with its keys over the first group's
(e.g. `train.resume=true train.max_steps=6`: a second run resuming the first one's checkpoint from
disk into a freshly built model). Run i saves its final weights as OUT_FOLDER/i.safetensors and
prints `RUN {json}`: its last evaluation, the number of processes and whether the model was sharded.
"""

import json
import sys
from pathlib import Path

from lmforge import config
from lmforge.models.load import set_dropout
from lmforge.run import fit_prepared, prepare
from lmforge.train.parallel import full_weights, make_accelerator, sharded


def force_fsdp() -> None:
    """Run FSDP on CPU processes, as accelerate does on GPUs.

    accelerate (1.16) starts FSDP only on accelerators: on CPU it makes `accelerate launch` with an
    FSDP config plain DDP (which lmforge refuses). Here its shared state is set to what it would be on
    a GPU machine, with the plugin read from the same FSDP_* variables the launcher exported from the
    config file; from `Accelerator.prepare` (fully_shard, activation checkpointing) down, everything
    runs as it would there."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    Accelerator(cpu=True)
    PartialState().distributed_type = DistributedType.FSDP  # AcceleratorState copies it from here
    state = AcceleratorState()
    state.distributed_type, state.fsdp_plugin = DistributedType.FSDP, FullyShardedDataParallelPlugin()


def train(out: Path, overrides: list[str]) -> None:
    prepared = prepare(config.load(None, overrides))
    set_dropout(prepared.model, 0.0)  # each process would draw its own dropout masks
    result = fit_prepared(prepared)
    acc = make_accelerator()
    weights = full_weights(acc, prepared.model)  # every process joins the gathering of a sharded model
    if not acc.is_main_process:
        return
    from safetensors.torch import save_file

    save_file(weights, out)
    checkpointed = sum("Checkpoint" in type(m).__name__ for m in prepared.model.modules())
    record = [r for r in result.history if "eval_loss" in r][-1]
    print("RUN", json.dumps({**record, "processes": acc.num_processes, "sharded": sharded(acc),
                             "checkpointed_layers": checkpointed, "steps": result.steps}))


def main(args: list[str]) -> None:
    if args[0] == "--fsdp-on-cpu":
        force_fsdp()
        args = args[1:]
    out, groups = Path(args[0]), [[]]
    for arg in args[1:]:
        groups.append([]) if arg == "--then" else groups[-1].append(arg)
    for i, extra in enumerate(groups):
        train(out / f"{i}.safetensors", groups[0] + (extra if i else []))


if __name__ == "__main__":
    main(sys.argv[1:])
