"""The loop over several processes: the accelerator, and a model's whole state when FSDP shards it.

Under DDP every process holds the whole model. Under FSDP each holds a shard of every parameter and
of the optimizer state, so saving (best/, checkpoints) first gathers the whole ("full") state dicts
onto the main process, a collective every process joins, and resuming hands every process the
whole state to keep its shard of. `best/` is then an ordinary model folder, and a checkpoint holds
whole tensors (the FSDP optimizer state keyed by parameter name), not one process's shards.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import torch

from lmforge.errors import LmforgeError
from lmforge.runtime.device import pick_device

if TYPE_CHECKING:
    from accelerate import Accelerator

# `accelerate launch --config_file` turns the file's distributed_type into one of these variables.
REQUESTED = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DEEPSPEED"}
T = TypeVar("T")


def make_accelerator() -> Accelerator:
    """The accelerator `accelerate launch` or `torchrun` set up for this process.

    `cpu=True` where there is no GPU: only so does accelerate see torchrun's processes on a CPU
    machine as one gloo job (otherwise each process trains alone on every batch). An engine the
    launch asked for that accelerate does not start here (it runs FSDP and DeepSpeed only on
    accelerators) is refused rather than silently replaced by plain data parallelism."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=pick_device().type == "cpu")
    for variable, engine in REQUESTED.items():
        if os.environ.get(variable, "").lower() == "true" and acc.distributed_type != engine:
            raise LmforgeError(f"accelerate launch asked for {engine}, but accelerate runs {engine} only on GPUs "
                               f"and this run is {acc.distributed_type.value} on {acc.device}; launch with "
                               "configs/accelerate/ddp.yaml (or torchrun) here")
    if sharded(acc) and acc.state.fsdp_plugin.fsdp_version != 2:
        raise LmforgeError("FSDP: lmforge saves and resumes FSDP2 models; set fsdp_version: 2 in the accelerate "
                           "config (configs/accelerate/fsdp.yaml)")
    return acc


def wait_for_all() -> None:
    """Return once every process of the launch got here (at once for one process): each process
    checks output_dir before the first one writes into it."""
    make_accelerator().wait_for_everyone()


def on_main_process(work: Callable[[], T], otherwise: T) -> T:
    """`work()` on the main process, `otherwise` on the others, returned once every process got here:
    a run's closing files (metrics.json, report.html) are written once, not raced by every process,
    and no process ends the launch before the main one has written them."""
    acc = make_accelerator()
    result = work() if acc.is_main_process else otherwise
    acc.wait_for_everyone()
    return result


def sharded(acc: Accelerator) -> bool:
    """Whether each process holds only a shard of the model (FSDP): every forward pass is then a
    collective, and saving gathers the shards first."""
    return bool(acc.distributed_type == "FSDP")


def evaluation_model(acc: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The model evaluation's forward passes run: DDP's wrapper broadcasts buffers in every forward, a
    collective, so processes scoring different numbers of batches (fewer examples than processes, an
    uneven last batch) would wait on each other forever; the module inside holds the same weights and
    runs alone. A sharded model stays wrapped: its every process scores every example."""
    from torch.nn.parallel import DistributedDataParallel

    return acc.unwrap_model(model) if isinstance(model, DistributedDataParallel) else model


def check_engine(acc: Accelerator, grad_accum: int) -> None:
    """Refuse what the engine would run differently from what lmforge means, before anything is trained."""
    if grad_accum > 1 and acc.distributed_type == "DEEPSPEED":
        raise LmforgeError("train.grad_accum > 1 under DeepSpeed: DeepSpeed steps after every backward pass unless "
                           "its own gradient_accumulation_steps is set; use more processes or train.grad_accum=1")


def full_weights(acc: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the main process (under FSDP other processes get {}); every
    process must call this. Tied weights appear under their first name only, as in safetensors."""
    weights = acc.get_state_dict(model)
    return {name: weights[name].contiguous() for name in weights if name not in _aliases(acc.unwrap_model(model))}


def sharded_weights(acc: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """For `save_model_folder(weights=)`: the whole weights of a model FSDP sharded (every process
    must call this), None for a model whose own parameters are whole."""
    return full_weights(acc, model) if sharded(acc) else None


def full_optimizer_state(acc: Accelerator, model: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
    """The whole optimizer state on the main process (every process must call this). Under FSDP it
    is keyed by parameter name, so it does not depend on how the parameters were sharded."""
    if acc.distributed_type == "DEEPSPEED":
        return {}  # ZeRO's state holds Python objects (its loss scaler): not saved, and --resume says so
    if not sharded(acc):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, _torch_optimizer(optimizer),
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(acc: Accelerator, model: torch.nn.Module, optimizer: Any, weights: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any]) -> None:
    """Put whole weights and optimizer state (as `full_weights`/`full_optimizer_state` made them)
    back into the model and optimizer; each process keeps its own shard."""
    if not optimizer_state:
        raise LmforgeError("--resume: the checkpoint holds no optimizer state: it was written under DeepSpeed, whose "
                           "optimizer state lmforge does not save (it is not tensors only); resume works under DDP "
                           "and FSDP")
    inner = acc.unwrap_model(model)
    for alias, first in _aliases(inner).items():  # a tied weight was saved under one of its names
        if first in weights or alias in weights:
            weights[alias] = weights[first] = weights.get(first, weights.get(alias))
    try:
        if sharded(acc):
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            options = StateDictOptions(full_state_dict=True)
            set_model_state_dict(model, weights, options=options)
            set_optimizer_state_dict(model, _torch_optimizer(optimizer), optimizer_state, options=options)
        else:
            inner.load_state_dict(weights)
            optimizer.load_state_dict(optimizer_state)
    except (RuntimeError, KeyError, ValueError) as exc:  # torch names the first mismatching key or shape
        reason = " ".join(str(exc).split()) or type(exc).__name__  # torch's message spans lines
        raise LmforgeError(f"--resume: the checkpoint does not fit this run's model or optimizer ({reason[:300]})") \
            from None


def _aliases(model: torch.nn.Module) -> dict[str, str]:
    """Each tied parameter's later names -> its first name (a decoder's output layer -> its embeddings)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer under accelerate's wrapper: torch's FSDP state-dict functions read it directly."""
    from accelerate.optimizer import AcceleratedOptimizer

    while isinstance(optimizer, AcceleratedOptimizer):
        optimizer = optimizer.optimizer
    return optimizer
