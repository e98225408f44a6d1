import re
from pathlib import Path

import pytest

from lmforge import config
from lmforge.errors import LmforgeError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_required_keys_exist():
    keys = {key for key, _, _ in config.describe()}
    for key in ["task", "model.path", "data.train", "data.validation", "data.test", "data.text_column",
                "data.label_column", "data.encoding", "train.epochs", "train.max_steps", "train.max_time",
                "train.batch_size", "train.lr", "train.precision", "train.seed", "output_dir"]:
        assert key in keys
    cfg = config.load()
    assert cfg.data.text_column == "text" and cfg.data.label_column == "label"
    assert all(doc for _, doc, _ in config.describe()), "every option needs a one-line doc"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-5\n  epochs: 2\nmodel:\n  path: some/model\n")
    cfg = config.load(path, ["train.epochs=5", "train.precision=fp32", "data.train=my.csv", "overwrite=yes"])
    assert cfg.train.lr == pytest.approx(3e-5)  # YAML reads 3e-5 as a string; the field type decides
    assert cfg.train.epochs == 5.0 and cfg.train.precision == "fp32"
    assert cfg.model.path == "some/model" and cfg.data.train == "my.csv" and cfg.overwrite is True


@pytest.mark.parametrize("overrides, message", [
    (["train.lr_rate=1"], "train.lr_rate"),
    (["trian.lr=1"], "trian"),
    (["train.batch_size=abc"], "train.batch_size"),
    (["train.max_steps=1.5"], "train.max_steps"),
    (["overwrite=maybe"], "overwrite"),
    (["train=3"], "train"),
    (["novalue"], "key=value"),
])
def test_bad_keys_and_types_name_the_key(overrides, message):
    with pytest.raises(LmforgeError, match=message):
        config.load(None, overrides)


@pytest.mark.parametrize("override, message", [
    ("train.lr=nan", "'train.lr': expected a finite number"),
    ("train.lr=inf", "'train.lr': expected a finite number"),
    ("train.lr=-1", "'train.lr': must be at least 0"),
    ("train.batch_size=-2", "'train.batch_size': must be at least 0"),
    ("train.grad_accum=0", "'train.grad_accum': must be at least 1"),
    ("train.max_steps=-1", "'train.max_steps': must be at least 0"),
    ("model.max_length=0", "'model.max_length': must be at least 1"),
    ("train.warmup_ratio=1.5", "'train.warmup_ratio': must be at most 1"),
    ("train.precision=fp8", "'train.precision': must be one of auto, bf16, fp32"),
    ("train.schedule=exponential", "'train.schedule': must be one of linear, cosine, constant"),
    ("method=qlora", "'method': must be one of full, lora"),
    ("privacy.dp.delta=2", "'privacy.dp.delta': must be at most 1"),
])
def test_values_out_of_range_are_refused_at_load_naming_the_key(override, message):
    with pytest.raises(LmforgeError, match=re.escape(message)):
        config.load(None, [override])


def test_a_bad_value_or_a_missing_checkpoint_writes_nothing(tiny_cfg, tmp_path):
    from lmforge.commands.finetune import run

    with pytest.raises(LmforgeError, match="no checkpoint"):
        run(tiny_cfg(f"output_dir={tmp_path / 'fresh'}"), resume=True)
    assert not (tmp_path / "fresh").exists()


def test_wrong_type_in_yaml_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: [1, 2]\n")
    with pytest.raises(LmforgeError, match="train.epochs"):
        config.load(path)


def test_saved_config_round_trips(tmp_path):
    cfg = config.load(None, ["train.lr=1e-4", "data.encoding=gb18030"])
    config.save(cfg, tmp_path / "config.yaml")
    assert config.load(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "accelerate" not in p.parts),
                         ids=lambda p: p.name)  # configs/accelerate/ holds accelerate's files: test_scale_configs
def test_every_shipped_config_loads(path):
    cfg = config.load(path)
    assert cfg.task and cfg.output_dir
