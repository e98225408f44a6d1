"""What per-example clipping costs: lmforge's ghost clipping vs Opacus' per-example gradients.

One DP-SGD step (forward, clipping, noise, AdamW) of a BERT classifier with a 21,128-token
vocabulary (bert-base-chinese's), batch B of 64-token sequences, in three ways, each in its own
process so peak memory is its own:
  none     no DP: one backward pass (the floor)
  opacus   the usual hand-written DP: Opacus GradSampleModule + DPOptimizer, which materialise
           every example's gradient (B x parameters)
  lmforge  lmforge.privacy.dp.DPTraining: ghost clipping (per-example gradient norms, then a
           second backward of the reweighted losses)
Reports median seconds per step over the timed steps and the process's peak RSS.

Usage: flock /tmp/lmforge-bench.lock python bench/dp_clipping.py [--preset tiny] [--batch 256 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODES = ("none", "opacus", "lmforge")


def one(mode: str, preset: str, batch: int, steps: int) -> dict:
    """Time `steps` DP-SGD steps in this process; return seconds per step and peak RSS."""
    import torch
    from transformers import BertForSequenceClassification

    from lmforge.models.presets import encoder_config
    from lmforge.privacy.dp import DPTraining

    torch.manual_seed(0)
    model = BertForSequenceClassification(encoder_config(preset, 21128, 0, 64, num_labels=2)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(1000, 21128, (batch, 64))
    labels = torch.randint(0, 2, (batch,))
    # Per-example position and token-type ids: BERT broadcasts (1, L) ids, which Opacus cannot split.
    positions = torch.arange(64).expand(batch, 64).contiguous()

    def losses() -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions,
                       token_type_ids=torch.zeros_like(ids)).logits
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none")

    if mode == "lmforge":
        run = DPTraining(1.0, batch / 12000, 1.0, 1e-5, batch)
        optimizer = run.wrap(model, optimizer)
        backward = run.backward
    elif mode == "opacus":
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        GradSampleModule(model, loss_reduction="sum")  # hooks the model's own layers, as lmforge did before
        optimizer = DPOptimizer(optimizer, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch)
        backward = lambda losses: losses.sum().backward()  # noqa: E731
    else:
        backward = lambda losses: losses.mean().backward()  # noqa: E731
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = losses()
        backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "batch": batch, "s_per_step": statistics.median(times[1:]), "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.preset, int(args.one[1]), args.steps)))
        return
    from lmforge.runtime.device import describe_box

    print(f"box: {describe_box()}")
    print(f"one DP-SGD step, BERT {args.preset} with a 21,128-token vocabulary, 64-token sequences, bf16 autocast")
    print(f"{'batch':>6} {'mode':>8} {'s/step':>8} {'peak MB':>8} {'vs opacus':>10}")
    for batch in args.batch:
        rows = {}
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps),
                                  "--one", mode, str(batch)], capture_output=True, text=True, check=True)
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        for mode, r in rows.items():
            ratio = rows["opacus"]["s_per_step"] / r["s_per_step"]
            print(f"{batch:>6} {mode:>8} {r['s_per_step']:>8.2f} {r['peak_mb']:>8.0f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
