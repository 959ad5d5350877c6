"""``convbench <command>``: an argparse program whose commands reach their modules' own parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from convbench import cli


def test_every_command_runs_its_module_with_the_remaining_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["recipe"]) == 0  # `convbench recipe` lists the recipes
    assert "budget" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])  # the train stage's own parser answers
    assert exit_.value.code == 0 and "family" in capsys.readouterr().out


def test_an_unknown_command_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in err


def test_no_command_prints_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)


def test_bench_runs_the_checkouts_bench_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--help"])  # bench/run.py's own parser answers
    assert exit_.value.code == 0 and "--quick" in capsys.readouterr().out


def test_bench_without_a_checkout_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "convbench" / "cli.py"))
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("convbench bench: error: no ") and "source checkout" in err[0]
