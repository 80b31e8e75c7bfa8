"""`python -m ingestion validate`: the checkpoint run by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingestion.__main__ import main
from tests.ingestion.filemakers import csv_bytes, padding


def test_cli_validates_a_file_and_prints_where_everything_is(
    write_file, tmp_path: Path, capsys
) -> None:
    path = write_file("reviews.csv", csv_bytes([*padding(60), ("", "1")]))
    run_dir = tmp_path / "cli_run"
    code = main(
        ["validate", "--source", "synthetic", "--path", str(path), "--run-dir", str(run_dir)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert '"rows_read": 61' in out and '"text_empty": 1' in out
    assert f"data docs:  {run_dir.resolve() / 'data_docs' / 'index.html'}" in out
    assert len(pd.read_parquet(run_dir / "accepted.parquet")) == 60


def test_cli_reports_a_bad_file_and_exits_1(write_file, tmp_path: Path, capsys) -> None:
    path = write_file("reviews.csv", csv_bytes(padding(5), header=("text", "stars")))
    code = main(
        ["validate", "--source", "synthetic", "--path", str(path), "--run-dir", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "MissingColumns" in err and "['label'] missing" in err


def test_cli_rejects_unpaired_paths(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["validate"])
    code = main(["validate", "--source", "imdb", "--source", "kindle", "--path", "x.csv"])
    assert code == 2
    assert "one path per source" in capsys.readouterr().err
