"""The same loop under `torchrun --nproc_per_node 2` (gloo on CPU) matches one process at equal global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("dist_worker.py")


def _run(prefix: list[str], out: Path, overrides: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent)}
    done = subprocess.run([*prefix, str(WORKER), str(out), *overrides], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return next(line for line in done.stdout.splitlines() if line.startswith("EVAL"))


@pytest.mark.slow
def test_two_processes_match_one(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    base = [f"data.train={cfg.data.train}", f"data.test={cfg.data.test}", "model.preset=tiny",
            f"model.tokenizer={cfg.model.tokenizer}", "train.max_steps=6", "train.batch_size=16",
            "train.lr=2e-3", "train.precision=fp32", "train.eval_every=3"]
    one = _run([sys.executable], tmp_path / "one.safetensors", base + [f"output_dir={tmp_path / 'one'}"])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    two = _run(torchrun, tmp_path / "two.safetensors", base + [f"output_dir={tmp_path / 'two'}"])
    a, b = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    loss_one, acc_one, world_one = map(float, one.split()[1:])
    loss_two, acc_two, world_two = map(float, two.split()[1:])
    assert (world_one, world_two) == (1, 2)  # really two processes sharing each batch
    assert acc_one == acc_two and loss_one == pytest.approx(loss_two, rel=1e-4)
