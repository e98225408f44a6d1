"""Privacy audit: exposure and membership inference on known answers, canary planting, CLI end to end."""

import json
import math
from collections import Counter

import numpy as np
import pytest
from test_generation import PAIRS, bpe  # noqa: F401  (bpe is a fixture: a tiny byte-level BPE tokenizer)

from lmforge.cli import main
from lmforge.data.readers import read_rows
from lmforge.errors import LmforgeError
from lmforge.privacy.attacks import exposure, extrapolated_exposure, membership_inference
from lmforge.privacy.canary import Canaries, make_canaries


def test_exposure_of_a_secret_ranked_first_is_the_whole_space():
    space = 1000
    others = np.arange(1.0, space)  # every other candidate, all less likely (higher log-perplexity)
    assert exposure(0.0, others) == pytest.approx(math.log2(space))
    assert exposure(others[-1] + 1, others) == pytest.approx(0.0)  # ranked last
    assert exposure(500.5, others) == pytest.approx(math.log2(space) - math.log2(501))  # rank 501


def test_exposure_of_a_random_rank_is_about_one_bit():
    rng = np.random.default_rng(0)
    bits = [exposure(s[0], s[1:]) for s in rng.normal(size=(2000, 1000))]
    assert np.median(bits) == pytest.approx(1.0, abs=0.15)  # rank |R|/2
    assert np.mean(bits) == pytest.approx(math.log2(math.e), abs=0.15)  # E[-log2 U] = 1.44


def test_sampled_exposure_is_capped_by_the_sample_and_ties_count_against_the_secret():
    assert exposure(0.0, np.ones(99)) == pytest.approx(math.log2(100))  # first of 99 samples: >= 6.64 bits
    assert exposure(1.0, np.ones(99)) == pytest.approx(0.0)  # all tied: nothing can be claimed
    far = extrapolated_exposure(-10.0, np.random.default_rng(0).normal(size=500))
    assert far > 20  # 10 sigma below the candidates: far beyond what 500 samples resolve


def test_membership_inference_auc_on_toy_losses():
    rng = np.random.default_rng(0)
    assert membership_inference(np.zeros(50), np.ones(50))["auc"] == 1.0  # members always lower loss
    assert membership_inference(np.ones(50), np.zeros(50))["auc"] == 0.0
    same = membership_inference(rng.normal(size=4000), rng.normal(size=4000))
    assert same["auc"] == pytest.approx(0.5, abs=0.03) and same["advantage"] < 0.06
    shifted = membership_inference(rng.normal(0, 1, 4000), rng.normal(1, 1, 4000))
    assert shifted["auc"] == pytest.approx(0.76, abs=0.02)  # Phi(1 / sqrt 2) for a 1-sigma shift


def test_canaries_are_random_distinct_and_candidates_exclude_the_secret():
    made = make_canaries(5, 2, digits=4, seed=3)
    assert len(set(made.secrets)) == 5 and all(len(s) == 4 and s.isdigit() for s in made.secrets)
    assert make_canaries(5, 2, digits=4, seed=3).secrets == made.secrets
    assert make_canaries(5, 2, digits=4).secrets != make_canaries(5, 2, digits=4).secrets  # OS randomness
    secret = made.secrets[0]
    sampled = made.candidates(secret, 100, seed=0)
    assert len(set(sampled)) == 100 and secret not in sampled
    every = made.candidates(secret, 20000, seed=0)
    assert len(every) == 9999 and secret not in every  # exact: the whole space but the secret
    with pytest.raises(LmforgeError, match="placeholder"):
        make_canaries(1, 1, template="no secret here")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_canary_command_plants_each_secret_repeat_times_in_the_files_format(tmp_path, suffix):
    src = tmp_path / f"qa{suffix}"
    if suffix == ".csv":
        src.write_text("question,answer\n" + "".join(f"{q},{a}\n" for q, a in PAIRS), encoding="utf-8")
    else:
        src.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n" for q, a in PAIRS))
    out, record = tmp_path / f"canaried{suffix}", tmp_path / "canaries.json"
    assert main(["canary", str(src), "--out", str(out), "--canaries", str(record), "--count", "3",
                 "--repeat", "4", "--seed", "1"]) == 0
    canaries = Canaries.load(record)
    answers = Counter(row.values["answer"] for row in read_rows(out))
    assert {canaries.text(s): 4 for s in canaries.secrets}.items() <= answers.items()
    assert sum(answers.values()) == len(PAIRS) + 12 and canaries.text("0").startswith("我的密码是")


def _finetune(tokenizer, data, out, *extra):
    return main(["finetune", "task=generation", f"data.train={data}", f"data.validation={data}", "model.preset=tiny",
                 f"model.tokenizer={tokenizer}", f"output_dir={out}", "train.batch_size=8", "train.lr=5e-3",
                 "train.seed=0", "train.precision=fp32", "train.warmup_ratio=0", "generation.max_new_tokens=8",
                 *extra])


def test_audit_finds_planted_canaries_and_members(bpe, tmp_path):  # noqa: F811
    src, canaried = tmp_path / "qa.jsonl", tmp_path / "canaried.jsonl"
    src.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n" for q, a in PAIRS * 3))
    assert main(["canary", str(src), "--out", str(canaried), "--canaries", str(tmp_path / "planted.json"),
                 "--count", "3", "--repeat", "6", "--digits", "3", "--seed", "1"]) == 0
    make_canaries(3, 6, digits=3, seed=2).save(tmp_path / "unseen.json")  # same shape, never trained on
    assert _finetune(bpe, canaried, tmp_path / "run", "train.epochs=12", "train.eval_every=1000") == 0
    holdout = tmp_path / "holdout.jsonl"
    questions = [{"question": f"问题{i}？", "answer": f"答案是{i * 7}。"} for i in range(12)]
    holdout.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    model = tmp_path / "run" / "best"
    results = {}
    for name in ("planted", "unseen"):
        assert main(["audit", str(model), "--data", str(canaried), "--holdout", str(holdout), "--out",
                     str(tmp_path / name), "--canaries", str(tmp_path / f"{name}.json"), "--candidates", "200"]) == 0
        results[name] = json.loads((tmp_path / name / "audit.json").read_text())
    planted, unseen = results["planted"]["canaries"], results["unseen"]["canaries"]
    assert planted["estimate"].startswith("sampled") and planted["space_bits"] == pytest.approx(math.log2(1000))
    # 200 sampled candidates resolve up to log2(201) = 7.65 bits; a never-seen secret ranks at random
    assert planted["mean_exposure"] > 6.5 and unseen["mean_exposure"] < 3, (planted, unseen)
    assert results["planted"]["membership_inference"]["auc"] > 0.9  # memorised training answers
    assert results["planted"]["privacy"] == "no differential privacy"


def test_audit_of_a_classifier_and_canaries_refused(tiny, tiny_cfg, tmp_path):
    from lmforge.commands import finetune

    cfg = tiny_cfg("train.epochs=1")
    finetune.run(cfg)
    model = f"{cfg.output_dir}/best"
    args = ["audit", model, "--data", str(tiny / "train.csv"), "--holdout", str(tiny / "test.csv")]
    assert main(args) == 0
    mia = json.loads((tmp_path / "run" / "best" / "audit.json").read_text())["membership_inference"]
    assert mia["n_train"] == 240 and mia["n_holdout"] == 60 and 0 <= mia["auc"] <= 1
    make_canaries(1, 1, digits=2, seed=1).save(tmp_path / "c.json")
    with pytest.raises(LmforgeError, match="generation model"):
        from lmforge.commands.audit import run

        run(model, str(tiny / "train.csv"), str(tiny / "test.csv"), canaries=str(tmp_path / "c.json"), overwrite=True)
