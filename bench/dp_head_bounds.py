"""Why a fixed DP clipping bound fails a head on a pretrained encoder, and what the adaptive bound does.

A classifier head (BERT's pooler shape, 384 -> tanh -> 2, fresh weights) trained on multilingual-e5's
mean-pooled sentence vectors of zh reviews (computed once, the encoder frozen, no dropout), with
lmforge's own DP-SGD (`lmforge.privacy.dp.DPTraining`: ghost clipping, Poisson batches, noise, and
the adaptive bound of `privacy.dp.clip_quantile`) and AdamW, at a fixed bound of 1 or 3 and with the
adaptive bound (median, starting at 1). Same rows, steps and learning rate in every cell; the mean
test accuracy of several seeds. Seconds per run: the head alone, so the grid takes minutes where
the same runs through the encoder (bench/dp_utility.py) take an hour.

Usage: python bench/dp_head_bounds.py [--train-rows 4000] [--steps 64] [--seeds 3]
(needs the demo data, python examples/prepare_zh_sentiment.py, and assets/me5-small from make install)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from dp_utility import _rows  # noqa: E402  (the same shuffled rows as the encoder runs)


def features(csv: Path, model_dir: Path, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean of the encoder's token states per text (eval mode), and the labels (pos = 1)."""
    import pandas as pd
    from transformers import AutoModel, AutoTokenizer

    frame = pd.read_csv(csv)
    tokenizer, encoder = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    pooled = []
    with torch.inference_mode():
        for start in range(0, len(frame), 64):
            batch = tokenizer(list(frame.text[start : start + 64]), truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled.append((encoder(**batch).last_hidden_state * mask).sum(1) / mask.sum(1))
    return torch.cat(pooled), torch.tensor((frame.label == "pos").to_numpy(), dtype=torch.long)


def train(x: torch.Tensor, y: torch.Tensor, test: tuple[torch.Tensor, torch.Tensor], *, epsilon: float,
          bound: float, adaptive: bool, lr: float, steps: int, batch: int, seed: int) -> float:
    """Test accuracy of the head after `steps` steps (Poisson batches and DP-SGD unless epsilon is 0)."""
    from lmforge.config import DPConfig
    from lmforge.privacy.dp import DPTraining, noise_for_target
    from lmforge.train.batching import poisson_epoch

    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Linear(x.shape[1], x.shape[1]), torch.nn.Tanh(), torch.nn.Linear(x.shape[1], 2))
    for layer in (head[0], head[2]):  # BERT's initialisation of its pooler and classifier
        torch.nn.init.normal_(layer.weight, std=0.02)
        torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    n, q = len(x), batch / len(x)
    if epsilon:
        delta = 1 / (10 * n)
        sigma = noise_for_target(DPConfig(target_epsilon=epsilon), delta, q, steps)
        run = DPTraining(sigma, q, bound, delta, batch, clip_quantile=0.5 if adaptive else 0.0)
        optimizer = run.wrap(head, optimizer)
    done, epoch = 0, 0
    while done < steps:
        plan = poisson_epoch(n, batch, seed, epoch) if epsilon else torch.randperm(n).split(batch)
        for rows in plan[: steps - done]:
            rows = torch.as_tensor(rows, dtype=torch.long)
            losses = torch.nn.functional.cross_entropy(head(x[rows]), y[rows], reduction="none")
            if not epsilon:
                losses.mean().backward()
            elif len(rows):
                run.backward(losses)
            else:
                run.before_step(head, empty=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        done, epoch = done + len(plan[: steps - done]), epoch + 1
    with torch.no_grad():
        return float((head(test[0]).argmax(1) == test[1]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "assets/me5-small"))
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2])
    args = parser.parse_args()
    from lmforge.runtime.device import describe_box

    work, data = Path(tempfile.mkdtemp(prefix="bench-dp-head-")), ROOT / "data/zh_sentiment"
    x, y = features(_rows(data / "train.csv", 0, args.train_rows, work / "train.csv"), Path(args.model),
                    args.max_length)
    test = features(_rows(data / "test.csv", 500, 1000, work / "test.csv"), Path(args.model), args.max_length)
    cells = {"no DP": (0.0, 0.0, False), **{f"eps={e:g}, {name}": (e, c, a) for e in (8.0, 1.0) for name, c, a in (
        ("bound 1 fixed", 1.0, False), ("bound 3 fixed", 3.0, False), ("adaptive from 1", 1.0, True))}}
    print(f"\nbox: {describe_box()}")
    print(f"head (384 -> tanh -> 2) on {Path(args.model).name} mean-pooled vectors, {args.train_rows} training rows, "
          f"{args.steps} steps of {args.batch_size}, test 1000 rows; mean accuracy of {args.seeds} seeds")
    print(f"{'':<28}" + "".join(f"{f'lr {lr:g}':>10}" for lr in args.lrs))
    for name, (eps, bound, adaptive) in cells.items():
        accs = [statistics.mean(train(x, y, test, epsilon=eps, bound=bound, adaptive=adaptive, lr=lr, steps=args.steps,
                                      batch=args.batch_size, seed=seed) for seed in range(args.seeds))
                for lr in args.lrs]
        print(f"{name:<28}" + "".join(f"{a:>10.3f}" for a in accs), flush=True)


if __name__ == "__main__":
    main()
