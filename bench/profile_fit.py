"""Where a training step's time goes: `fit` under torch.profiler, the top operators by self CPU time.

Runs any run config (a YAML file and/or key=value overrides) for --steps optimizer steps with a
64-row validation split, and prints the box, each operator's share of the profiled time and the
seconds per step. Evaluation and saving at the end are part of the profile; keep --steps well
above one evaluation's cost.

Usage: python bench/profile_fit.py [CONFIG.yaml] key=value ... [--steps 20] [--top 25] [--trace out.json]
  e.g. python bench/profile_fit.py data.train=data/zh_sentiment/train.csv \
           data.validation=data/zh_sentiment/test.csv model.preset=mini \
           model.tokenizer=assets/bert-chinese-tokenizer train.batch_size=32 train.lr=5e-4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="*", help="a YAML file, then key=value overrides")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--trace", help="also write a Chrome trace here")
    parser.add_argument("--shapes", action="store_true", help="also list the top operators by input shape")
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lmforge import config, log
    from lmforge.run import fit_prepared, prepare
    from lmforge.runtime.device import describe_box

    log.setup()
    path = args.config[0] if args.config and "=" not in args.config[0] else None
    overrides = [o for o in args.config if "=" in o]
    out = Path(tempfile.mkdtemp(prefix="profile-fit-"))
    cfg = config.load(Path(path) if path else None, [*overrides, f"train.max_steps={args.steps}",
                                                    f"output_dir={out}", "overwrite=true", "train.log_every=1"])
    prepared = prepare(cfg)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        fit_prepared(prepared)
    seconds = time.perf_counter() - start
    print(f"\nbox: {describe_box()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{args.steps} steps in {seconds:.1f} s ({seconds / args.steps:.3f} s/step, evaluation included)\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    if args.shapes:
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.top))
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
