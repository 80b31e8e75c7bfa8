"""The README's benchmark table is the committed result files, rendered; nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import readme_table
from bench.readme_table import END, README, RESULTS, START, main, render, replace_in


def test_readme_table_matches_the_committed_results() -> None:
    """Fails when a result file changed and `make bench-readme` was not run (or the README
    was edited by hand)."""
    assert main(["--check"]) == 0, "README.md's benchmark table is stale: run `make bench-readme`"
    assert render() in README.read_text()


def test_every_figure_comes_from_the_files(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    serving = json.loads((results / "serving.json").read_text())
    serving["scorer_limit"]["single_ms"] = 123.456
    (results / "serving.json").write_text(json.dumps(serving))
    quality = json.loads((results / "quality-imdb.json").read_text())
    quality["test_accuracy"] = 0.1234
    (results / "quality-imdb.json").write_text(json.dumps(quality))
    table = render(results)
    assert "one review per call 123.46 ms" in table
    assert "test accuracy 0.1234" in table
    assert table != render()


def test_an_absent_file_leaves_its_rows_out(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "features.json").unlink()
    table = render(results)
    assert "features.json" not in table.replace("features-tuning.json", "")
    assert "serving.json" in table


def test_write_replaces_only_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    monkeypatch.setattr(readme_table, "README", readme)
    monkeypatch.setattr(readme_table, "ROOT", tmp_path)
    assert main(["--check"]) == 1
    assert main(["--write"]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith("\nafter\n")
    assert "old table" not in text and render() in text
    assert main(["--check"]) == 0
    with pytest.raises(ValueError, match="lacks the markers"):
        replace_in("no markers here", render())
