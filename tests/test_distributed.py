"""The same loop on 2 gloo processes matches one process at equal global batch: DDP and FSDP under
`accelerate launch --config_file configs/accelerate/{ddp,fsdp}.yaml` (FSDP with resume and best/),
and DP-SGD under torchrun (clipping per example, noise once per global batch, the same epsilon).

Tolerances: every run is fp32 on the same data in the same order; two processes differ from one only
in the order float32 additions happen (each process sums its half of the batch, then the halves are
added), a relative error near 1e-7 per operation. Over 6 AdamW steps the weights measured within
6e-7 of one process (DDP and FSDP alike), so weights are compared at atol 1e-5 (rtol 1e-4) and losses
at rel 1e-5. The faults these tests exist for land far outside (measured by planting each one): one
process's share left out of the gradient moves weights by 1e-2, a gradient averaged instead of
summed over processes by 3.4e-4, DP noise added by both processes instead of once by 1.7e-4.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TESTS = Path(__file__).parent
WORKER, ROOT = TESTS / "dist_worker.py", TESTS.parent
RUN = ["train.max_steps=6", "train.batch_size=16", "train.lr=2e-3", "train.precision=fp32", "train.eval_every=3",
       "train.log_every=1", "train.schedule=constant", "train.warmup_ratio=0", "train.metric=loss"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
DP = "privacy.dp.target_epsilon=8"
NO_NOISE = "privacy.dp.noise_multiplier=1e-9"  # noise far below the tolerances; 0 would turn DP-SGD off


def _launch(prefix: list[str], out: Path, args: list[str], flags: tuple[str, ...] = ()) -> list[dict]:
    """Run the worker (once per `--then` group); the RUN records it printed, one per run."""
    # The subprocess imports this tree's lmforge, not whichever is installed.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(TESTS)])}
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*prefix, str(WORKER), *flags, str(out), *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line[4:]) for line in done.stdout.splitlines() if line.startswith("RUN ")]


def _base(tiny: Path) -> list[str]:
    return [f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}", "model.preset=tiny",
            f"model.tokenizer={tiny / 'tok'}", *RUN]


def _losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["train_loss"] for r in records if "train_loss" in r}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def one(tiny, tmp_path_factory) -> Path:
    """The one-process reference: 6 steps of 16, evaluated (and checkpointed) at steps 3 and 6."""
    out = tmp_path_factory.mktemp("one")
    [record] = _launch([sys.executable], out, [*_base(tiny), f"output_dir={out / 'run'}"])
    assert record["processes"] == 1 and record["steps"] == 6
    return out


def _accelerate(config: str, port: int, *options: str) -> list[str]:
    file = ROOT / "configs" / "accelerate" / config
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(file), "--num_processes", "2",
            "--main_process_port", str(port), *options]


@pytest.mark.slow
def test_ddp_two_processes_match_one(one, tiny, tmp_path):
    """Launched with configs/accelerate/ddp.yaml (torchrun: test_dp_sgd_on_two_processes_matches_one)."""
    [two] = _launch(_accelerate("ddp.yaml", 29533), tmp_path, [*_base(tiny), f"output_dir={tmp_path / 'run'}"])
    assert two["processes"] == 2 and not two["sharded"]  # really two processes sharing each batch
    _assert_same_weights(load_file(one / "0.safetensors"), load_file(tmp_path / "0.safetensors"))
    assert _losses(tmp_path / "run") == pytest.approx(_losses(one / "run"), rel=1e-5)


@pytest.mark.slow
def test_fsdp_two_processes_match_one_resume_and_save_a_plain_folder(one, tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification

    # BERT names no layer class of its own for wrapping (a decoder's _no_split_modules does): README.
    launch = _accelerate("fsdp.yaml", 29543, "--fsdp_transformer_layer_cls_to_wrap", "BertLayer")
    # 3 steps (checkpoint at step 3), then a second run resumes it from disk up to step 6.
    first, resumed = _launch(launch, tmp_path, [*_base(tiny), "train.max_steps=3", f"output_dir={tmp_path / 'run'}",
                                                "--then", "train.resume=true", "train.max_steps=6"],
                             flags=("--fsdp-on-cpu",))
    assert (first["processes"], first["sharded"], first["steps"], resumed["steps"]) == (2, True, 3, 6)
    assert first["checkpointed_layers"] == 2  # the config's activation checkpointing, one per BertLayer
    assert _losses(tmp_path / "run") == pytest.approx(_losses(one / "run"), rel=1e-5)  # steps 1-3, then 4-6 resumed
    reference = load_file(one / "0.safetensors")
    _assert_same_weights(reference, load_file(tmp_path / "1.safetensors"))
    # best/ (step 6: eval loss still falling) is an ordinary folder of whole weights, for transformers alone
    best = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "best")
    _assert_same_weights(reference, {k: v for k, v in best.state_dict().items() if k in reference})
    assert set(best.config.id2label.values()) == {"neg", "pos"}


@pytest.mark.slow
def test_dp_sgd_on_two_processes_matches_one(tiny, tmp_path):
    """Poisson batches of the global rate, clipped per example on each process, noised once: with
    (almost) no noise the weights prove the clipped sum is per example and global; with the noise of
    epsilon=8 they prove it was added once, with the std of one process (rank 0 draws the noise a
    one-process run with the same seed draws; noise from both processes would double it). The
    two-process runs also split each batch into two micro-batches. Epsilon is the one-process one."""
    base = _base(tiny)
    runs = [NO_NOISE, "output_dir={}/no_noise", "--then", "privacy.dp.noise_multiplier=0", DP, "output_dir={}/dp"]
    one = _launch([sys.executable], tmp_path / "one", [*base, *(a.format(tmp_path / "one") for a in runs)])
    two = _launch([*TORCHRUN, "--master_port", "29553"], tmp_path / "two",
                  [*base, "train.grad_accum=2", *(a.format(tmp_path / "two") for a in runs)])
    assert [r["processes"] for r in one + two] == [1, 1, 2, 2]
    for i in (0, 1):
        _assert_same_weights(load_file(tmp_path / "one" / f"{i}.safetensors"),
                             load_file(tmp_path / "two" / f"{i}.safetensors"))
    assert one[1]["dp_epsilon"] == pytest.approx(two[1]["dp_epsilon"], rel=1e-12)
    assert 0 < two[1]["dp_epsilon"] <= 8 + 1e-6


@pytest.mark.slow
def test_finetune_under_torchrun_writes_once_and_scores_fewer_examples_than_processes(tiny, tmp_path):
    """`lmforge finetune` on 2 processes with ONE validation (and test) example: process 1 gets no
    example to score, and must still join every evaluation (no hang) without changing the metric; only
    process 0 writes metrics.json, report.html and best/, and the other waits for it rather than exit."""
    one = tmp_path / "one.csv"
    one.write_text("text,label\n这个 酒店 很好 the,pos\n", encoding="utf-8")
    log = _lmforge_on_two(29563, ["finetune", *_base(tiny), f"data.validation={one}", f"data.test={one}",
                                  f"output_dir={tmp_path / 'run'}"])
    assert log.count("wrote ") == 1, log[-3000:]  # write_evaluation's one line, from process 0
    history = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    best_loss = min(r["eval_loss"] for r in history if "eval_loss" in r)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["loss"] == pytest.approx(best_loss, rel=1e-5)  # best/ rescored alone: the loop's number was right
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "best" / "config.json").is_file()


@pytest.mark.slow
def test_distill_under_torchrun_moves_the_student_into_place_once(tiny, tiny_classifier, tmp_path):
    """Both processes used to move best/'s files up into --out; the second found them gone and failed."""
    log = _lmforge_on_two(29583, ["distill", "--teacher", str(tiny_classifier), "--student-layers", "1",
                                  f"data.train={tiny / 'train.csv'}", f"data.test={tiny / 'test.csv'}",
                                  "train.max_steps=4", "train.precision=fp32", "--out", str(tmp_path / "s")])
    assert log.count("wrote ") == 1, log[-3000:]
    assert (tmp_path / "s" / "model.safetensors").is_file() and (tmp_path / "s" / "report.html").is_file()


def _lmforge_on_two(port: int, args: list[str]) -> str:
    """`torchrun --nproc_per_node 2 -m lmforge ARGS` from this tree; its log (stderr) once it succeeded."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([*TORCHRUN, "--master_port", str(port), "-m", "lmforge", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr
