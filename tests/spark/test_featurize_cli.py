"""The featurize command line: clear one-line errors, and a real spark-submit run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jobs.spark.featurize import main, read_features

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_missing_input_names_the_file(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere" / "reviews.csv"
    code = main(["--input", str(missing), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1
    assert str(missing) in err
    assert not (tmp_path / "out").exists()


def test_unknown_suffix_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("text,label\nok,1\n")
    assert main(["--input", str(path), "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "reviews.txt" in err and ".parquet" in err


def test_source_and_explicit_columns_conflict(tmp_path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--input", "x.csv", "--output", "o", "--source", "imdb", "--text-column", "t"])
    assert exc.value.code != 0


@pytest.mark.spark
def test_missing_column_names_it_and_lists_the_columns_found(spark, tmp_path, capsys) -> None:
    path = tmp_path / "reviews.parquet"
    pd.DataFrame({"body": ["fine"], "stars": ["5"]}).to_parquet(path, index=False)
    code = main(["--input", str(path), "--output", str(tmp_path / "out"), "--source", "imdb"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1
    assert "'review'" in err and "'sentiment'" in err
    assert "'body'" in err and "'stars'" in err
    assert not spark.sparkContext._jsc.sc().isStopped()  # main leaves a session it did not start


@pytest.mark.spark
def test_unreadable_file_fails_with_one_line(spark, tmp_path, capsys) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all\n" * 10)
    assert main(["--input", str(path), "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "could not read" in err and "broken.parquet" in err


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_runs_the_script(tmp_path) -> None:
    frame = pd.DataFrame(
        {
            "text": ['Loved it, "really"\nsecond line', "Awful.", "Awful.", "   "],
            "label": ["positive", "0", "0", "1"],
        }
    )
    frame.to_csv(tmp_path / "tiny.csv", index=False)
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "spark-submit"),
            "--master",
            "local[1]",
            "--driver-memory",
            "512m",
            # A tiny job spends most of its CPU compiling; the quick JIT tier is plenty here.
            "--driver-java-options",
            "-XX:TieredStopAtLevel=1",
            "--conf",
            "spark.sql.shuffle.partitions=3",
            str(REPO_ROOT / "jobs" / "spark" / "featurize.py"),
            "--input",
            str(tmp_path / "tiny.csv"),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # spark-submit merges the driver's stderr (logs) into stdout; the summary is the JSON line.
    summary = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("{")))
    assert summary["rows_read"] == 4
    assert summary["rows_written"] == 2
    assert summary["duplicates_removed"] == 1
    assert summary["quarantined"]["empty_text"] == 1
    got = read_features(tmp_path / "out")
    assert sorted(got["text"]) == ["Awful.", 'Loved it, "really"\nsecond line']
