"""Atomic writes give their outputs the permissions the umask gives, as `mkdir` and `open` do, not the
owner-only 0700/0600 of the temporary names they are built under."""

import os

import pytest

from lmforge.atomic import write_dir, write_text


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_permissions_of_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_dir(tmp_path / "model", lambda tmp: (tmp / "config.json").write_text("{}"))
        write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "model"]  # no temporary left behind
