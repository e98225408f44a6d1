"""Command line: maps command names to plain functions. Parsing only; the work is in `commands/`.

Config commands take `[CONFIG.yaml] [key=value ...]`; their `--help` lists every config key with
its one-line doc. Model commands take a model folder and flags. A user's mistake prints one line
and exits 2; `--debug` shows the stack trace instead.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from lmforge.errors import LmforgeError


@dataclass(frozen=True)
class Command:
    """A command `name` runs `lmforge.commands.<name>.run` (dashes become underscores), imported only
    when it runs so `--help` stays fast. Flag defaults live in that function's signature alone."""

    doc: str
    uses_config: bool = False
    flags: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)


def _number(kind: type, low: float | None = None, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type for a number flag within [low, high]: `--batch-size 0` or a negative count is a
    slip, refused while parsing (one `error:` line naming the flag) instead of deep inside a command."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_POSITIVE, _NONNEGATIVE = _number(int, 1), _number(int, 0)
_MODEL = (["model"], {"help": "model folder written by lmforge (e.g. runs/x/best)"})
_PRECISION = (["--precision"], {"choices": ["auto", "bf16", "fp32"],
                                "help": "numeric precision for inference (auto: bf16 where the CPU/GPU has it fast)"})
_BATCH = (["--batch-size"], {"type": _POSITIVE, "help": "examples per forward pass"})
_OVERWRITE = (["--overwrite"], {"action": "store_true",
                                "help": "replace an existing non-empty output (refused otherwise; inputs are never "
                                        "overwritten)"})
_TEMPLATE = (["--template"], {"help": "chat template instead of the one saved with the model: a built-in name or "
                                      "a .jinja file (warns when it differs)"})

COMMANDS: dict[str, Command] = {
    "corpus": Command("clean raw text (.txt/.jsonl/.json, .gz, folders) into a pretraining corpus",
                      flags=[(["action"], {"choices": ["build"], "help": "what to do"}),
                             (["inputs"], {"nargs": "+", "help": "raw text files or folders"}),
                             (["--out"], {"required": True,
                                          "help": "corpus folder to write (docs.jsonl + stats.json)"}),
                             (["--dedup"], {"choices": ["none", "exact", "minhash"],
                                            "help": "drop exact duplicates, or near-duplicates too (MinHash-LSH)"}),
                             (["--min-chars"], {"type": _NONNEGATIVE, "help": "drop documents shorter than this"}),
                             (["--max-chars"], {"type": _NONNEGATIVE, "help": "drop documents longer than this (0: keep)"}),
                             (["--redact-pii"], {"action": "store_true",
                                                 "help": "replace PII with typed placeholders"}),
                             (["--text-field"], {"help": "text field of .jsonl/.json files"}),
                             (["--strict"], {"action": "store_true",
                                             "help": "refuse (instead of skip) binary or undecodable files"}),
                             (["--encoding"], {"help": "text encoding of the input files"}),
                             (["--workers"], {"type": _POSITIVE, "help": "processes cleaning files in parallel (the "
                                                                   "output does not depend on it)"}), _OVERWRITE]),
    "tokenizer": Command("train a WordPiece (encoder) or byte-level BPE (decoder) tokenizer",
                         flags=[(["action"], {"choices": ["train"], "help": "what to do"}),
                                (["inputs"], {"nargs": "+", "help": "corpus folder(s) or raw text files"}),
                                (["--out"], {"required": True, "help": "tokenizer folder to write"}),
                                (["--kind"], {"choices": ["wordpiece", "bpe"],
                                              "help": "wordpiece for masked-LM encoders, bpe for causal-LM decoders"}),
                                (["--vocab-size"], {"type": _number(int, 100), "help": "vocabulary size"}),
                                (["--lowercase"], {"action": "store_true", "help": "lowercase (WordPiece only)"}),
                                (["--text-field"], {"help": "text field of .jsonl/.json files"}),
                                (["--seed"], {"type": _NONNEGATIVE, "help": "seed of the held-out document draw"}),
                                _OVERWRITE]),
    "pretrain": Command("pretrain an encoder (objective=mlm) or decoder (objective=clm) on a corpus",
                        uses_config=True,
                        flags=[(["--resume"], {"action": "store_true",
                                               "help": "continue the run in output_dir from its last checkpoint"})]),
    "finetune": Command("adapt a pretrained (or preset) model to a task",
                        uses_config=True,
                        flags=[(["--resume"], {"action": "store_true",
                                               "help": "continue the run in output_dir from its last checkpoint"})]),
    "sweep": Command("hyper-parameter search (Optuna): each trial a run folder; leaderboard and best.yaml",
                     uses_config=True,
                     flags=[(["--space"], {"action": "append", "required": True,
                                           "help": "searched key: key=lo..hi[:log], key=a,b,c, or a YAML file of "
                                                   "them (repeat the flag for more keys)"}),
                            (["--out"], {"required": True, "help": "sweep folder: trial-NNN/, study.db, "
                                                                   "leaderboard.html, best.yaml"}),
                            (["--trials"], {"type": _POSITIVE, "help": "trials in the study, counting earlier ones"}),
                            (["--max-time"], {"type": _number(float, 0),
                                              "help": "seconds for this process's trials (0: no limit)"}),
                            (["--storage"], {"help": "Optuna storage URL several workers share (default: sqlite:///OUT/study.db)"}),
                            (["--seed"], {"type": _NONNEGATIVE, "help": "seed of the sampler"}), _OVERWRITE]),
    "baseline": Command("fit the task's non-neural baseline (classification: TF-IDF + logistic regression; ner: a CRF)",
                        uses_config=True),
    "evaluate": Command("score a saved model on a labelled file",
                        flags=[_MODEL, (["--data"], {"required": True, "help": "labelled file to score on"}),
                               (["--out"], {"required": True, "help": "folder for metrics.json and report.html"}),
                               (["--no-baseline"], {"action": "store_false", "dest": "baseline",
                                                    "help": "skip the baseline column (TF-IDF + LR, or a CRF for ner)"}),
                               _PRECISION, _BATCH, _OVERWRITE]),
    "generate": Command("answer every question of a file with a generation model",
                        flags=[_MODEL, (["--input"], {"required": True,
                                                      "help": "questions, Q&A pairs or conversations"}),
                               (["--output"], {"required": True, "help": "answers file (.jsonl)"}),
                               _PRECISION, (["--batch-size"], {"type": _POSITIVE, "help": "prompts per batch"}),
                               _TEMPLATE, _OVERWRITE]),
    "chat": Command("chat with a generation model in the terminal (streaming)",
                    flags=[_MODEL, _PRECISION, _TEMPLATE]),
    "merge": Command("merge LoRA adapters into a plain HF model folder",
                     flags=[_MODEL, (["--out"], {"required": True, "help": "folder for the merged model"}),
                            _OVERWRITE]),
    "predict": Command("label every row of a file with a saved model",
                       flags=[_MODEL, (["--input"], {"required": True, "help": "file with a text column"}),
                              (["--output"], {"required": True, "help": "predictions file (.jsonl or .csv)"}),
                              _PRECISION, _BATCH, _OVERWRITE]),
    "redact": Command("replace emails, phones, IDs, bank cards, IPs and URL passwords with placeholders",
                      flags=[(["input"], {"help": "data file (.csv, .tsv, .jsonl, .json or .parquet)"}),
                             (["--out"], {"required": True, "help": "redacted copy, same format as the input"}),
                             (["--report"], {"help": "also write the counts as JSON here"}),
                             (["--columns"], {"help": "comma-separated columns to redact (default: every text field)"}),
                             (["--encoding"], {"help": "text encoding of the input and output"}), _OVERWRITE]),
    "audit": Command("privacy audit: membership-inference AUC (any model), canary exposure (generation)",
                     flags=[_MODEL, (["--data"], {"required": True, "help": "the model's training file (members)"}),
                            (["--holdout"], {"required": True,
                                             "help": "a file from the same source the model never saw"}),
                            (["--out"], {"help": "folder for audit.json (default: the model folder)"}),
                            (["--canaries"], {"help": "canaries file written by `lmforge canary` (generation models)"}),
                            (["--candidates"], {"type": _POSITIVE,
                                                "help": "random candidates each secret is ranked against "
                                                        "(all when the space is smaller)"}),
                            (["--max-examples"], {"type": _NONNEGATIVE, "help": "examples sampled from each file (0: all)"}),
                            (["--seed"], {"type": _NONNEGATIVE, "help": "seed of the example and candidate draws"}),
                            _PRECISION, _BATCH, _OVERWRITE]),
    "canary": Command("plant random secret canaries in a Q&A/conversation file for `lmforge audit`",
                      flags=[(["input"], {"help": "training file (.jsonl, .json, .csv, .tsv, .parquet)"}),
                             (["--out"], {"required": True, "help": "canaried copy, same format as the input"}),
                             (["--canaries"], {"required": True,
                                               "help": "JSON file recording the secrets (keep it private)"}),
                             (["--count"], {"type": _POSITIVE, "help": "number of distinct secrets"}),
                             (["--repeat"], {"type": _POSITIVE, "help": "copies of each canary in the file"}),
                             (["--digits"], {"type": _number(int, 1, 18),
                                             "help": "random digits per secret (|R| = 10^digits)"}),
                             (["--template"], {
                                             "help": "canary sentence with a {secret} placeholder"}),
                             (["--prompt"], {"help": "the question each canary answers"}),
                             (["--encoding"], {"help": "text encoding of the input and output"}),
                             (["--seed"], {"type": _NONNEGATIVE,
                                           "help": "seed of secrets and positions (0: secrets from the OS RNG)"}),
                             _OVERWRITE]),
    "encrypt": Command("encrypt a data file (training reads FILE.enc with data.key_file) or a model/checkpoint "
                       "folder (AES-256-GCM)",
                       flags=[(["file"],
                               {"help": "file or folder to encrypt (the plaintext is left in place; --out may not be it)"}),
                              (["--key-file"], {"required": True,
                                                "help": "key file (created with a new random key if missing)"}),
                              (["--out"], {"help": "encrypted file to write (default: FILE.enc)"}), _OVERWRITE]),
    "decrypt": Command("decrypt a FILE.enc written by `lmforge encrypt`; a modified file is refused",
                       flags=[(["file"], {"help": "encrypted file or FOLDER.enc"}),
                              (["--key-file"], {"required": True, "help": "the key file it was encrypted with"}),
                              (["--out"], {"help": "plaintext file to write (default: FILE without .enc)"}),
                              _OVERWRITE]),
    "serve": Command("serve a model over HTTP (OpenAI-compatible chat/completions and embeddings, /v1/classify, "
                     "/v1/explain)",
                     flags=[_MODEL, (["--host"], {"help": "address to bind (default: loopback only)"}),
                            (["--port"], {"type": _number(int, 1, 65535), "help": "TCP port"}),
                            (["--api-key"],
                             {"help": "require 'Authorization: Bearer KEY' on every request but /health"}),
                            (["--max-batch"], {"type": _POSITIVE, "help": "most requests per forward pass"}),
                            (["--max-batch-tokens"], {"type": _POSITIVE, "help": "most padded tokens per forward pass "
                                                                                "(queued texts are grouped by length)"}),
                            (["--quantize"], {"choices": ["int8"],
                                              "help": "quantize on load: int8 weights and activations for encoders, "
                                                      "int8 weights for generators"}),
                            (["--compile"], {"action": "store_true",
                                             "help": "compile the greedy decoding step at start-up (generators; used for "
                                                     "one request at a time, batches use generate)"}),
                            (["--prompt-lookup"], {"type": _POSITIVE, "metavar": "N",
                                                   "help": "greedy decoding of a lone request drafts N tokens per step from "
                                                           "the prompt (answers that copy from it come faster)"}),
                            _PRECISION, _TEMPLATE]),
    "ui": Command("web UI on this machine: watch, start, compare and try runs under --runs",
                  flags=[(["--runs"], {"help": "folder whose run folders the UI shows and where new runs go"}),
                         (["--data"], {"action": "append", "metavar": "FOLDER",
                                       "help": "a folder the UI may read data files and models from "
                                               "(repeatable; --runs always)"}),
                         (["--host"], {"help": "address to bind; another than loopback wants --api-key"}),
                         (["--port"], {"type": _number(int, 1, 65535), "help": "TCP port"}),
                         (["--api-key"], {"help": "require 'Authorization: Bearer KEY' on every API request "
                                                  "(the browser asks for it once)"})]),
    "distill": Command("train a smaller student classifier on a teacher's soft labels",
                       uses_config=True,
                       flags=[(["--teacher"], {"help": "teacher model folder (sets distill.teacher)"}),
                              (["--student-layers"], {"type": _POSITIVE,
                                                      "help": "keep every k-th teacher layer, this many "
                                                              "(sets distill.student_layers)"}),
                              (["--out"], {"help": "student model folder to write (sets output_dir)"})]),
    "prune": Command("prune the least important attention heads, then fine-tune briefly to recover",
                     flags=[_MODEL, (["--out"], {"required": True, "help": "pruned model folder to write"}),
                            (["--heads"], {"type": _number(float, 0, 1), "help": "share of all attention heads to prune"}),
                            (["--recover-steps"], {"type": _NONNEGATIVE, "help": "recovery fine-tune steps (0: none)"}),
                            (["--linear"], {"type": _number(float, 0, 1),
                                            "help": "also zero this share of each encoder linear weight by magnitude"}),
                            (["--importance-batches"], {"type": _POSITIVE,
                                                        "help": "training batches that score head importance"}),
                            (["overrides"], {"nargs": "*", "metavar": "key=value",
                                             "help": "config overrides on the model's saved run config, "
                                                     "e.g. train.lr=1e-4"}), _OVERWRITE]),
    "quantize": Command("post-training quantization into a folder predict/evaluate/serve load",
                        flags=[_MODEL, (["--method"], {
                            "required": True, "choices": ["bf16", "int8-dynamic", "int8-weight-only"],
                            "help": "bf16 weights; int8 weights with int8 activations at run time (classifiers); "
                                    "int8 weights, float activations (decoders)"}),
                               (["--out"], {"required": True, "help": "quantized model folder to write"}), _OVERWRITE]),
    "trim-vocab": Command("keep only the vocabulary some data uses: a smaller model folder (same tokens and "
                          "outputs on that data)",
                          flags=[_MODEL, (["--data"], {"required": True,
                                                       "help": "comma-separated data files whose texts must stay "
                                                               "covered (.csv, .tsv, .jsonl, .json, .parquet)"}),
                                 (["--out"], {"required": True, "help": "trimmed model folder to write"}),
                                 (["--min-count"], {"type": _POSITIVE,
                                                    "help": "keep a piece only if the data uses it this many times"}),
                                 (["--columns"], {"help": "comma-separated text columns (default: every text field)"}),
                                 (["--no-chars"], {"action": "store_false", "dest": "chars",
                                                   "help": "do not also keep every single-character piece of the "
                                                           "data's scripts (unseen characters then become unknown)"}),
                                 _OVERWRITE]),
    "export-onnx": Command("export a classifier to ONNX, checked with onnxruntime",
                           flags=[_MODEL, (["--out"], {"required": True,
                                                       "help": "folder for model.onnx, tokenizer and config"}),
                                  (["--texts"],
                                   {"help": "file with a text column for the parity check "
                                            "(default: built-in sentences)"}), _OVERWRITE]),
    "compare": Command("size, parameters, latency, throughput and accuracy of classifiers side by side",
                       flags=[(["models"], {"nargs": "+", "help": "model folders; the first is the reference"}),
                              (["--data"], {"required": True, "help": "labelled file to score and time on"}),
                              (["--out"], {"help": "folder for compare.json and compare.html"}),
                              (["--precision"], {"choices": ["auto", "bf16", "fp32"],
                                                 "help": "precision of float folders (default fp32: as trained); "
                                                         "bf16 and int8 folders run as stored"}),
                              (["--latency-texts"], {"type": _POSITIVE,
                                                     "help": "texts timed one at a time for the batch-1 latency"}),
                              _OVERWRITE]),
    "explain": Command("which words drove each prediction of a classifier, and how far to trust that "
                       "(faithfulness vs random)",
                       flags=[_MODEL, (["--text"], {"help": "one text to explain"}),
                              (["--input"], {"help": "file with a text column: explain every row"}),
                              (["--column"], {"help": "text column of --input/--data (default: the model's)"}),
                              (["--out"], {"help": "folder for explain.jsonl and explain.html (default: print)"}),
                              (["--method"], {"choices": ["auto", "ig", "gradxinput", "occlusion", "shap"],
                                              "help": "attribution method; auto picks the most faithful on a sample"}),
                              (["--global"], {"action": "store_true", "dest": "global_view",
                                              "help": "per class, the words with the largest mean attribution over "
                                                      "--data, beside the TF-IDF baseline's top n-grams"}),
                              (["--data"], {"help": "dataset of --global"}),
                              (["--ig-steps"], {"type": _POSITIVE, "help": "integration steps of ig"}),
                              (["--shap-samples"], {"type": _POSITIVE, "help": "permutations sampled per text by shap"}),
                              _PRECISION, _BATCH, _OVERWRITE]),
    "kb": Command("knowledge-base QA: build an index of Q&A pairs or passages, ask it, score it",
                  flags=[(["action"], {"choices": ["build", "ask", "eval"], "help": "what to do"}),
                         (["args"], {"nargs": "*", "help": "build: SOURCE | ask: INDEX QUESTION | eval: INDEX"}),
                         (["--out"], {"help": "build: folder for the index"}),
                         (["--encoder"],
                          {"help": "build: encoder folder or hub id, e.g. sentence-transformers/all-MiniLM-L6-v2"}),
                         (["--generate-with"],
                          {"help": "ask: generation model folder that writes the answer from the retrieved entries"}),
                         (["--explain"], {"action": "store_true",
                                          "help": "ask: with --generate-with, which passages the answer relied on"}),
                         (["-k"], {"type": _POSITIVE, "help": "ask: entries retrieved; eval: ranking depth (at least 5)"}),
                         (["--data"], {"help": "eval: held-out file with question and answer columns"}), _OVERWRITE]),
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    _take_overrides(parser, args, extra)
    if not args.command:
        parser.print_help()
        return 2
    from lmforge import log

    log.setup(args.debug)
    try:
        _dispatch(args)
    except (LmforgeError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _message(exc: Exception) -> str:
    """An OSError the checks could not foresee (a place only root may write, a full disk, a file
    removed mid-run) names its path and reason, like any other refusal, instead of a stack trace."""
    if isinstance(exc, OSError) and not isinstance(exc, LmforgeError):
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        return f"{where}: {exc.strerror or exc}" if where else f"{exc.strerror or exc}"
    return str(exc)


def _dispatch(args: argparse.Namespace) -> None:
    command = COMMANDS[args.command]
    function = _run_function(args.command)
    values = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "config_args")}
    if command.uses_config:
        from lmforge import config

        path, overrides = _split_config_args(args.config_args)
        function(config.load(path, overrides), **values)
    else:
        function(**values)


def _take_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """key=value items after a command's flags (`prune MODEL --heads 0.3 train.lr=1e-4`): argparse
    stops filling a positional list once a flag follows it, so they arrive here as leftovers."""
    rest = next((name for name in ("config_args", "overrides") if hasattr(args, name)), None)
    if extra and (rest is None or any("=" not in item for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, rest, getattr(args, rest) + extra)


def _split_config_args(items: list[str]) -> tuple[str | None, list[str]]:
    """The first item is a YAML file unless it is a key=value override."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    bad = [i for i in items[1:] if "=" not in i] if items else []
    if bad:
        raise LmforgeError(f"expected key=value, got '{bad[0]}'")
    return None, list(items)


def _run_function(name: str) -> Callable[..., Any]:
    return importlib.import_module(f"lmforge.commands.{name.replace('-', '_')}").run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="Train, evaluate and use language models.")
    parser.add_argument("--debug", action="store_true", help="show full stack traces on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.doc, description=command.doc,
                           formatter_class=type(f"_Help_{name}", (_Help,), {"command": name}),
                           epilog=_config_help() if command.uses_config else None)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full stack traces on errors")
        if command.uses_config:
            p.add_argument("config_args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                           help="a YAML config and/or dotted overrides such as train.lr=3e-5")
        for names, options in command.flags:
            optional = names[0].startswith("-") and not options.get("required")
            p.add_argument(*names, **({**options, "default": argparse.SUPPRESS} if optional else options))
    return parser


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default, read from the command's `run` signature (the one place defaults
    live); the command module is imported only when its help is printed."""

    command = ""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS and action.option_strings and action.dest != "help":
            parameter = inspect.signature(_run_function(self.command)).parameters.get(action.dest)
            shown = parameter is not None and parameter.default is not inspect.Parameter.empty
            value = parameter.default if shown else None
            said = isinstance(value, (int, float)) and f"({value:g}:" in text  # "(0: no limit)" already says it
            if value is not None and value is not False and value != "" and not said:
                text += f" (default: {parameter.default})"
        return text


def _config_help() -> str:
    from lmforge.config import describe

    rows = describe()
    width = max(len(key) for key, _, _ in rows)
    lines = [f"  {key:<{width}}  {doc} [default: {default!r}]" for key, doc, default in rows]
    return "config keys (set in the YAML file or as key=value):\n" + "\n".join(lines)
