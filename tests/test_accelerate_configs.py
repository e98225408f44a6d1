"""configs/accelerate/: every file is accepted by accelerate, and every `accelerate launch` line the
README documents starts what it says (engine, sharding, state-dict type, `-m lmforge finetune`).

Checked through accelerate's own launcher code: its config loader, its argument parser and
validation, the environment it hands the processes, and the plugin each process builds from it.
A DeepSpeed run needs the deepspeed package and CUDA GPUs; where they are missing the real run is
skipped, printing why (the FSDP and DDP runs are in test_distributed.py).
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "accelerate"
TESTS = ROOT / "tests"


def _readme_launches() -> list[list[str]]:
    """The `accelerate launch --config_file configs/accelerate/...` lines of the README's Scale-out section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Scale-out"):]
    section = section[: section.index("\n## ")]
    return [shlex.split(line) for line in re.findall(r"^accelerate launch --config_file configs/accelerate/.*$",
                                                     section, flags=re.M)]


def _launcher_env(argv: list[str], monkeypatch) -> tuple[object, dict[str, str]]:
    """What `accelerate launch argv...` resolves: its arguments and the processes' environment."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    monkeypatch.chdir(ROOT)  # the documented lines name configs relative to the checkout
    args = launch_command_parser().parse_args(argv[2:])
    args, defaults, from_config = _validate_launch_command(args)
    if not args.use_deepspeed:
        return args, prepare_multi_gpu_env(args)
    # as accelerate's launch_command does before its deepspeed_launcher
    fields = [*defaults.deepspeed_config, *(["mixed_precision"] if from_config else [])]
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    return args, prepare_deepspeed_cmd_env(args)[1]


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_every_config_is_accepted_by_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # refuses unknown keys
    assert loaded.distributed_type.value == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(name, "DEEPSPEED")
    assert loaded.mixed_precision == "no" and loaded.num_processes == 2  # lmforge autocasts itself


def test_readme_documents_a_launch_line_per_config():
    configs = {argv[3] for argv in _readme_launches()}
    assert configs == {f"configs/accelerate/{p.name}" for p in CONFIGS.glob("*.yaml")}
    for argv in _readme_launches():
        assert argv[4:7] == ["-m", "lmforge", "finetune"] and (ROOT / argv[7]).is_file(), argv


def test_fsdp_launch_shards_fully_with_whole_state_dicts_and_checkpointing(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType

    [argv] = [a for a in _readme_launches() if a[3].endswith("fsdp.yaml")]
    args, env = _launcher_env(argv, monkeypatch)
    assert args.module and args.training_script == "lmforge" and args.training_script_args[0] == "finetune"
    assert env["ACCELERATE_USE_FSDP"] == "true" and args.nproc_per_node == "2"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # what each launched process builds
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # full shard
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT and plugin.activation_checkpointing


def test_ddp_launch_is_plain_data_parallelism(monkeypatch):
    [argv] = [a for a in _readme_launches() if a[3].endswith("ddp.yaml")]
    args, env = _launcher_env(argv, monkeypatch)
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed and args.nproc_per_node == "2"
    assert args.module and args.training_script == "lmforge"
    assert "ACCELERATE_USE_FSDP" not in env and "ACCELERATE_USE_DEEPSPEED" not in env


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_launch_sets_the_zero_stage(stage, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin

    [argv] = [a for a in _readme_launches() if a[3].endswith(f"deepspeed_zero{stage}.yaml")]
    assert "train.grad_accum=1" in argv  # DeepSpeed steps after every backward pass: lmforge refuses more
    args, env = _launcher_env(argv, monkeypatch)
    assert args.module and args.training_script == "lmforge" and args.training_script_args[0] == "finetune"
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ds = DeepSpeedPlugin().deepspeed_config  # what each launched process hands DeepSpeed
    assert ds["zero_optimization"]["stage"] == stage and ds["gradient_accumulation_steps"] == 1
    # ZeRO-3's sharded weights are gathered into whole ones for best/
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)


def _deepspeed_missing() -> str:
    """Why DeepSpeed cannot run here ('' when it can)."""
    reasons = []
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        reasons.append("the deepspeed package is not installed (pip install deepspeed)")
    if torch.cuda.device_count() < 2:
        reasons.append(f"accelerate starts DeepSpeed on GPUs only and this machine has {torch.cuda.device_count()} "
                       "CUDA GPUs (2 needed)")
    return "; ".join(reasons)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_run_on_gpus(stage, tiny, tmp_path, capsys):
    missing = _deepspeed_missing()
    if missing:
        with capsys.disabled():
            print(f"\nDeepSpeed ZeRO-{stage} run skipped: {missing}")
        pytest.skip(missing)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(CONFIGS / f"deepspeed_zero{stage}.yaml"), "--num_processes", "2"]
    overrides = [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}", "model.preset=tiny",
                 f"model.tokenizer={tiny / 'tok'}", "train.max_steps=6", "train.batch_size=16", "train.lr=2e-3",
                 "train.precision=fp32", "train.eval_every=3", f"output_dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(TESTS)])}
    done = subprocess.run([*launch, str(TESTS / "dist_worker.py"), str(tmp_path), *overrides], env=env,
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert record["processes"] == 2 and record["steps"] == 6 and record["eval_loss"] < 1.0

    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "best")  # whole weights, plain folder


def test_an_engine_accelerate_does_not_start_here_is_refused(monkeypatch):
    """`accelerate launch` with fsdp.yaml on a CPU machine (or outside a launch) would otherwise
    train as plain DDP, or as one process, while the user asked for sharding."""
    from lmforge.errors import LmforgeError
    from lmforge.train.parallel import make_accelerator

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(LmforgeError, match="asked for FSDP.*ddp.yaml"):
        make_accelerator()


def test_what_deepspeed_cannot_do_is_refused_by_name():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from lmforge.errors import LmforgeError
    from lmforge.train.parallel import check_engine, load_full_state, make_accelerator

    with pytest.raises(LmforgeError, match="train.grad_accum > 1 under DeepSpeed"):
        check_engine(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED), 2)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(LmforgeError, match="--resume: .*no optimizer state.*DeepSpeed"):  # what a ZeRO run saved
        load_full_state(make_accelerator(), model, optimizer, model.state_dict(), {})
    other = torch.nn.Linear(3, 2).state_dict()  # a checkpoint of another model: one line, no traceback
    with pytest.raises(LmforgeError, match="--resume: the checkpoint does not fit .*weight"):
        load_full_state(make_accelerator(), model, optimizer, other, optimizer.state_dict())
