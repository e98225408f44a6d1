"""--resume never runs code from a checkpoint: a crafted pickle in any checkpoint file is refused."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from lmforge.commands import finetune
from lmforge.errors import LmforgeError


class _Payload:
    """Unpickling this creates the marker file: the proof that a checkpoint ran foreign code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    """A run folder with a checkpoint, trained once for the module."""
    from lmforge import config

    out = tmp_path_factory.mktemp("ckpt") / "run"
    finetune.run(config.load(None, [f"data.train={tiny / 'train.csv'}", "model.preset=tiny",
                                    f"model.tokenizer={tiny / 'tok'}", f"output_dir={out}", "train.epochs=1",
                                    "train.batch_size=32", "train.lr=2e-3", "train.precision=fp32"]))
    return out


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng.json", "state.json", "model.safetensors"])
def test_a_planted_pickle_is_refused_and_never_runs(finished, tiny_cfg, tmp_path, name):
    run = tmp_path / "copied_run"
    shutil.copytree(finished, run)
    marker = tmp_path / "pwned"
    (run / "checkpoint" / name).write_bytes(pickle.dumps(_Payload(marker)))
    cfg = tiny_cfg(f"output_dir={run}", "train.epochs=2", "train.resume=true")
    with pytest.raises(LmforgeError, match=f"refused .*{name}"):
        finetune.run(cfg)
    assert not marker.exists()


def test_resume_from_an_untouched_checkpoint_still_works(finished, tiny_cfg, tmp_path):
    run = tmp_path / "copied_run"
    shutil.copytree(finished, run)
    finetune.run(tiny_cfg(f"output_dir={run}", "train.epochs=2", "train.resume=true", "train.batch_size=32"))
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps[0] == 1 and steps[-1] == 14  # the first epoch's log, continued from step 7 to the end


def test_a_missing_checkpoint_file_is_named(finished, tiny_cfg, tmp_path):
    run = tmp_path / "copied_run"
    shutil.copytree(finished, run)
    (run / "checkpoint" / "rng.json").unlink()
    with pytest.raises(LmforgeError, match="rng.json is missing"):
        finetune.run(tiny_cfg(f"output_dir={run}", "train.epochs=2", "train.resume=true"))
