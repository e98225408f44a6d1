"""Corpus preparation larger than memory: `lmforge corpus build` and the token file on a ~1 GB corpus.

The corpus repeats the shipped Chinese corpora (data/raw_zh from examples/prepare_zh_corpus.py) until it
reaches --gb: one file per source per repeat, and in every repeat after the first about half the
documents get one character changed (position and character vary with the repeat), so exact dedup
drops the unchanged copies and MinHash the edited ones. Each variant runs in its own process; peak
RSS is sampled over the whole process tree (the main process plus its workers) every 0.1 s.

Targets (issue 18): peak RSS < 2 GB on ~1 GB; 1 vs 2 workers; time per GB. The two minhash builds
must write the same bytes (checked here as in the tests).

Usage (EXCLUSIVE lock: it times things):
    flock /tmp/lmforge-bench.lock .venv/bin/python bench/corpus_scale.py [--gb 1.0] [--work /tmp/corpus-scale]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import psutil
from variants import in_own_process, report

RAW = ("data/raw_zh", "/work/main/data/raw_zh")
TOKENIZER = ("assets/bert-chinese-tokenizer", "/work/main/assets/bert-chinese-tokenizer")
TOKENS_GB = 0.25  # the token-file variants tokenise this much of build-exact-2's corpus
EDIT = "的一是在不了有和人这中大为上个国我以要他"


def make_corpus(raw: Path, out: Path, gigabytes: float) -> int:
    """Repeat the files of `raw` into `out` until `gigabytes`; returns the bytes written."""
    sources = {"peoples_daily": _lines(raw / "peoples_daily_199801.txt"),
               "sanguo": json.loads((raw / "sanguo.json").read_text(encoding="utf-8")),
               "fortunes": json.loads((raw / "fortunes_zh.json").read_text(encoding="utf-8"))
               if (raw / "fortunes_zh.json").is_file() else []}
    out.mkdir(parents=True)
    written, repeat = 0, 0
    while written < gigabytes * 1e9:
        docs = {name: [_edit(d, repeat, i) for i, d in enumerate(texts)] for name, texts in sources.items()}
        written += _write(out / f"r{repeat:03d}_peoples_daily.txt", "\n".join(docs["peoples_daily"]) + "\n")
        written += _write(out / f"r{repeat:03d}_sanguo.jsonl",
                          "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs["sanguo"]))
        if docs["fortunes"]:
            written += _write(out / f"r{repeat:03d}_fortunes.json", json.dumps(docs["fortunes"], ensure_ascii=False))
        repeat += 1
    return written


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _edit(text: str, repeat: int, i: int) -> str:
    """Every other document of a repeat (which half changes with the repeat) gets one character changed."""
    if repeat == 0 or (i + repeat) % 2 or len(text) < 2:
        return text
    at = (repeat * 7919 + i * 104729) % len(text)
    return text[:at] + EDIT[(repeat + i) % len(EDIT)] + text[at + 1:]


def _write(path: Path, text: str) -> int:
    data = text.encode("utf-8")
    path.write_bytes(data)
    return len(data)


class PeakRss:
    """Peak resident memory of this process and its children, summed, sampled every `every` seconds."""

    def __init__(self, every: float = 0.1):
        self.peak, self.every, self.done = 0, every, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self.done.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self.done.wait(self.every)


def variant(name: str, corpus: Path, work: Path) -> dict:
    """`build-minhash-N`, `build-exact-N`: a corpus build; `tokens-N`: the token file of the first TOKENS_GB of
    build-exact-2's corpus (BERT-Chinese WordPiece)."""
    from lmforge.data.corpus import CorpusTexts, Subset, build_corpus, load_texts
    from lmforge.data.shards import write_tokens

    kind, *rest = name.rsplit("-", 1)
    workers = int(rest[0])
    size = sum(p.stat().st_size for p in corpus.iterdir())
    start = time.perf_counter()
    with PeakRss() as rss:
        if kind == "tokens":
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(next(p for p in TOKENIZER if Path(p).is_dir()))
            built = load_texts(str(work / "build-exact-2"))
            assert isinstance(built, CorpusTexts)
            first = bisect.bisect_left(built.starts, TOKENS_GB * 1e9)  # the documents of the first TOKENS_GB
            texts, size = Subset(built, range(first)), built.starts[first] if first < len(built) else None
            size = size or (work / "build-exact-2" / "docs.jsonl").stat().st_size
            out = work / name / "train.bin"
            meta = write_tokens(texts, tok, out, tok.sep_token_id, workers=workers)
            facts = {"documents": meta["documents"], "tokens": meta["tokens"]}
        else:
            out = work / name
            stats = build_corpus([str(corpus)], out, dedup=kind.split("-")[1], workers=workers)
            facts = {"documents": stats.documents_read, "kept": stats.documents_kept,
                     "duplicate_rate": stats.as_dict()["duplicate_rate"]}
    seconds = time.perf_counter() - start
    if kind != "tokens":
        with open(out / "docs.jsonl", "rb") as f:
            facts["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    return {"input_gb": size / 1e9, "seconds": seconds, "seconds_per_gb": seconds / (size / 1e9),
            "peak_rss_gb": rss.peak / 1e9, **facts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the synthetic corpus")
    parser.add_argument("--work", default="/tmp/lmforge-corpus-scale", help="scratch folder (corpus and outputs)")
    parser.add_argument("--variants", default="build-minhash-1,build-minhash-2,build-exact-2,tokens-1,tokens-2")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from lmforge.runtime.device import describe_box  # imports torch: not in the spawned workers, which import this file

    work = Path(args.work)
    corpus = work / "corpus"
    if args.variant:
        report(variant(args.variant, corpus, work))
        return
    raw = next((Path(p) for p in RAW if Path(p).is_dir()), None)
    if raw is None:
        raise SystemExit("no data/raw_zh: run examples/prepare_zh_corpus.py first")
    for name in args.variants.split(","):
        shutil.rmtree(work / name, ignore_errors=True)
    if not corpus.is_dir() or sum(p.stat().st_size for p in corpus.iterdir()) < args.gb * 1e9:
        shutil.rmtree(corpus, ignore_errors=True)
        print(f"writing a {args.gb:g} GB corpus from {raw} into {corpus} ...", flush=True)
        make_corpus(raw, corpus, args.gb)
    results = {name: in_own_process(__file__, name, ["--work", str(work)]) for name in args.variants.split(",")}
    print(f"\nbox: {describe_box()}")
    print(f"corpus: {len(list(corpus.iterdir()))} files, {sum(p.stat().st_size for p in corpus.iterdir()) / 1e9:.2f} GB")
    print("| variant | input GB | wall s | s per GB | peak RSS GB (all processes) | documents | kept / tokens |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        last = r.get("kept", r.get("tokens"))
        print(f"| {name} | {r['input_gb']:.2f} | {r['seconds']:.0f} | {r['seconds_per_gb']:.0f} | "
              f"{r['peak_rss_gb']:.2f} | {r['documents']:,} | {last:,} |")
    builds = [r["sha256"] for name, r in results.items() if name.startswith("build-minhash")]
    if len(builds) > 1:
        print(f"build-minhash outputs identical across worker counts: {len(set(builds)) == 1}")


if __name__ == "__main__":
    main()
