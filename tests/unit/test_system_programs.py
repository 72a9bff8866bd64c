"""Tests that need a system program skip without it on a laptop, and fail without it in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REQUIRE_ALL, system_program


def test_a_missing_program_skips_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(REQUIRE_ALL, raising=False)
    with pytest.raises(pytest.skip.Exception, match="install it with `apt-get install -y x`"):
        system_program("prometheus", "install it with `apt-get install -y x`")


def test_a_missing_program_fails_when_everything_must_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(REQUIRE_ALL, "1")
    with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
        system_program("prometheus", "install it with `apt-get install -y x`")


def test_a_present_program_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "prometheus"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert system_program("prometheus", "install it with `apt-get install -y x`") == str(program)
