"""Run by test_distributed under 1 or 2 processes: train the tiny model without dropout, save weights."""

import sys

import torch
from safetensors.torch import save_file

from lmforge import config
from lmforge.models.load import set_dropout
from lmforge.run import fit_prepared, prepare


def main(out: str, overrides: list[str]) -> None:
    prepared = prepare(config.load(None, overrides))
    set_dropout(prepared.model, 0.0)  # each process would draw its own dropout masks
    result = fit_prepared(prepared)
    model = prepared.model
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    evals = [r for r in result.history if "eval_loss" in r]
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    print("EVAL", evals[-1]["eval_loss"], evals[-1]["eval_accuracy"], world)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
