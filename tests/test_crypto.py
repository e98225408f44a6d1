"""Encryption at rest: round trip, tampering and wrong keys refused by name, encrypted training data."""

import json

import pytest

from lmforge.cli import main
from lmforge.data.readers import read_rows
from lmforge.errors import LmforgeError
from lmforge.privacy.crypto import decrypt_file, encrypt_file, new_key_file

ROWS = [("很好，推荐", "pos"), ("质量太差", "neg"), ('含逗号, 和"引号"', "pos")]


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f'"{t.replace(chr(34), 2 * chr(34))}",{label}\n' for t, label in ROWS),
                    encoding="utf-8")
    return path


def test_cli_round_trip_creates_a_private_key_and_hides_the_text(plain, tmp_path):
    key = tmp_path / "keys" / "k"
    assert main(["encrypt", str(plain), "--key-file", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    blob = (tmp_path / "train.csv.enc").read_bytes()
    assert "推荐".encode() not in blob and b"text,label" not in blob
    assert main(["decrypt", str(tmp_path / "train.csv.enc"), "--key-file", str(key), "--out",
                 str(tmp_path / "back.csv")]) == 0
    assert (tmp_path / "back.csv").read_bytes() == plain.read_bytes()


def test_every_modified_byte_is_refused_naming_the_file(plain, tmp_path):
    key = tmp_path / "k"
    new_key_file(key)
    enc = tmp_path / "train.csv.enc"
    encrypt_file(plain, enc, key)
    blob = enc.read_bytes()
    for position in (0, 20, len(blob) // 2, len(blob) - 1):  # header, key id, ciphertext, tag
        changed = bytearray(blob)
        changed[position] ^= 1
        enc.write_bytes(bytes(changed))
        with pytest.raises(LmforgeError, match=r"train\.csv\.enc: "):
            decrypt_file(enc, key)
    enc.write_bytes(blob[:-1])  # truncated
    with pytest.raises(LmforgeError, match="integrity check failed"):
        decrypt_file(enc, key)


def test_wrong_key_and_bad_key_files_are_refused(plain, tmp_path):
    new_key_file(tmp_path / "k1")
    new_key_file(tmp_path / "k2")
    encrypt_file(plain, tmp_path / "train.csv.enc", tmp_path / "k1")
    with pytest.raises(LmforgeError, match="different key"):
        decrypt_file(tmp_path / "train.csv.enc", tmp_path / "k2")
    (tmp_path / "short").write_text("YWJj\n")
    with pytest.raises(LmforgeError, match="not a key file"):
        decrypt_file(tmp_path / "train.csv.enc", tmp_path / "short")
    with pytest.raises(LmforgeError, match="already exists"):
        new_key_file(tmp_path / "k1")
    assert main(["decrypt", str(tmp_path / "train.csv.enc"), "--key-file", str(tmp_path / "k2")]) == 2


def test_readers_decrypt_with_the_key_and_refuse_without(plain, tmp_path):
    key = tmp_path / "k"
    new_key_file(key)
    encrypt_file(plain, tmp_path / "train.csv.enc", key)
    rows = read_rows(tmp_path / "train.csv.enc", key_file=str(key))
    assert [(r.values["text"], r.values["label"]) for r in rows] == ROWS
    assert rows[0].location == f"{tmp_path / 'train.csv.enc'}:2"
    with pytest.raises(LmforgeError, match=r"train\.csv\.enc is encrypted: .*data\.key_file"):
        read_rows(tmp_path / "train.csv.enc")


def test_finetune_trains_on_encrypted_files(tiny, tiny_cfg, tmp_path):
    from lmforge.commands import finetune

    key = tmp_path / "k"
    new_key_file(key)
    for name in ("train", "test"):
        encrypt_file(tiny / f"{name}.csv", tmp_path / f"{name}.csv.enc", key)
    cfg = tiny_cfg(f"data.train={tmp_path / 'train.csv.enc'}", f"data.test={tmp_path / 'test.csv.enc'}",
                   f"data.key_file={key}", "train.max_steps=2")
    metrics = finetune.run(cfg)
    assert 0 <= metrics["accuracy"] <= 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]


def test_model_folder_round_trip_and_swapped_files_refused(tmp_path):
    folder = tmp_path / "best"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    key = tmp_path / "k"
    assert main(["encrypt", str(folder), "--key-file", str(key)]) == 0
    enc = tmp_path / "best.enc"
    assert sorted(p.relative_to(enc).as_posix() for p in enc.rglob("*.enc")) == ["config.json.enc",
                                                                                 "sub/weights.bin.enc"]
    assert main(["decrypt", str(enc), "--key-file", str(key), "--out", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "sub" / "weights.bin").read_bytes() == (folder / "sub" / "weights.bin").read_bytes()
    (enc / "config.json.enc").rename(enc / "other.json.enc")  # a file moved: its path is authenticated
    with pytest.raises(LmforgeError, match=r"other\.json\.enc: integrity check failed"):
        from lmforge.privacy.crypto import decrypt_folder

        decrypt_folder(enc, tmp_path / "again", key)
    assert not (tmp_path / "again").exists()
