"""`moodboard serve --compare-model`: bad input is a one-line error and exit code 2, before anything
starts (no moto server, no index built)."""

from __future__ import annotations

from pathlib import Path

import pytest
from moodboard_local.cli import main


def serve(*args: str) -> int:
    return main(["serve", "--ephemeral", "--aws", "moto", "--port", "1", *args])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "moto server" not in captured.out + captured.err
    return lines[0]


def test_a_folder_that_is_not_a_model_bundle_exits_2(tiny_bundle: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()

    code = serve("--model", str(tiny_bundle), "--compare-model", str(tmp_path / "notes"))

    assert code == 2
    assert f"--compare-model {tmp_path / 'notes'} is not a model bundle" in one_line_error(capsys)


def test_the_served_model_itself_exits_2(tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = serve("--model", str(tiny_bundle), "--compare-model", str(tiny_bundle))

    assert code == 2
    assert "is the model already served" in one_line_error(capsys)


def test_more_than_three_compared_models_exit_2(tiny_bundle: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    four = [arg for i in range(4) for arg in ("--compare-model", str(tmp_path / str(i)))]

    code = serve("--model", str(tiny_bundle), *four)

    assert code == 2
    assert "at most 3 models" in one_line_error(capsys)


def test_comparing_with_an_index_instead_of_a_catalog_exits_2(tiny_bundle: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = serve("--model", str(tiny_bundle), "--index", str(tmp_path / "index"),
                 "--compare-model", str(tmp_path / "other"))

    assert code == 2
    assert "pass --catalog" in one_line_error(capsys)
