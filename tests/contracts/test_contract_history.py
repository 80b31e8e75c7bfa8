"""The feature-contract guard: version -> fingerprint history that a feature change cannot dodge."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import history
from core.usecases import get_use_case, use_case_names

REPO_ROOT = Path(__file__).resolve().parents[2]
HISTORY = Path("contracts") / "fingerprints.yaml"


@pytest.mark.parametrize("name", use_case_names())
def test_every_registered_use_case_matches_its_recorded_history(name: str) -> None:
    history.check_use_case_contract(get_use_case(name).contract)


def test_every_contract_in_the_repository_has_a_history_line() -> None:
    """Contracts not (yet) in the registry are held to the same history."""
    import importlib

    recorded = history.load_history(REPO_ROOT / HISTORY)
    for path in sorted((REPO_ROOT / "contracts").glob("*.py")):
        module = importlib.import_module(f"contracts.{path.stem}")
        if hasattr(module, "FEATURE_CONTRACT_VERSION"):
            history.check_contract(module, module.feature_fingerprint(), recorded)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def edits_to_committed_lines(repo: Path) -> list[str]:
    """Every committed revision's lines that the working-tree history edits or drops."""
    current = history.load_history(repo / HISTORY)
    changes: list[str] = []
    for commit in _git(repo, "log", "--format=%H", "--", str(HISTORY)).split():
        older = history.parse_history(_git(repo, "show", f"{commit}:{HISTORY}"))
        changes += [f"{commit[:10]} {c}" for c in history.recorded_changes(older, current)]
    return changes


def test_recorded_lines_are_never_edited() -> None:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    assert edits_to_committed_lines(REPO_ROOT) == []


def test_fingerprint_changes_when_a_feature_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    import features.reviews as module
    from contracts import reviews

    original = module.clean_text
    monkeypatch.setattr(module, "clean_text", lambda value: original(value).upper())
    with pytest.raises(history.ContractHistoryError, match="Bump FEATURE_CONTRACT_VERSION"):
        history.check_contract(
            reviews, reviews.feature_fingerprint(), history.load_history(REPO_ROOT / HISTORY)
        )


# ---- in a temporary copy of the repository: change a feature, try to get away with it ----


def _copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("features", "contracts", "core", "training/config", "monitoring/config"):
        shutil.copytree(REPO_ROOT / folder, dest / folder, ignore=ignore)
    return dest


def _guard(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("DRIFTLOOP_USECASES", None)
    return subprocess.run(
        [sys.executable, "-m", "contracts.history"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _fingerprint(repo: Path) -> str:
    code = "from contracts.reviews import feature_fingerprint; print(feature_fingerprint())"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_feature_change_without_version_bump_fails_in_a_temp_copy(tmp_path: Path) -> None:
    repo = _copy_repo(tmp_path / "repo")
    assert _guard(repo).returncode == 0, _guard(repo).stderr
    original = _fingerprint(repo)

    # A feature changes: elongation now counts doubled letters, not tripled.
    _edit(repo / "features" / "reviews.py", r'r"([a-z])\1\1"', r'r"([a-z])\1"')
    changed = _fingerprint(repo)
    assert changed != original

    # The old way out: paste the new fingerprint into the contract, keep the version.
    _edit(repo / "contracts" / "reviews.py", f'"{original}"', f'"{changed}"')
    done = _guard(repo)
    assert done.returncode == 1
    assert "Bump FEATURE_CONTRACT_VERSION" in done.stderr
    assert "reviews-v1" in done.stderr

    # Bumping the version without recording it is not enough either.
    _edit(repo / "contracts" / "reviews.py", '"reviews-v1"', '"reviews-v2"')
    done = _guard(repo)
    assert done.returncode == 1
    assert f"`reviews-v2: {changed}`" in done.stderr

    # Recording the new version (keeping the old line) passes.
    _edit(
        repo / HISTORY,
        f"reviews-v1: {original}\n",
        f"reviews-v1: {original}\n  reviews-v2: {changed}\n",
    )
    done = _guard(repo)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_editing_a_committed_line_is_caught_in_a_temp_copy(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = _copy_repo(tmp_path / "repo")
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, *env_args, "commit", "-qm", "history")
    assert edits_to_committed_lines(repo) == []

    # Change a feature, then overwrite the recorded line instead of adding a version.
    original = _fingerprint(repo)
    _edit(repo / "features" / "reviews.py", r'r"([a-z])\1\1"', r'r"([a-z])\1"')
    changed = _fingerprint(repo)
    _edit(repo / "contracts" / "reviews.py", f'"{original}"', f'"{changed}"')
    _edit(repo / HISTORY, f"reviews-v1: {original}", f"reviews-v1: {changed}")
    assert _guard(repo).returncode == 0  # the file alone now agrees with itself ...
    edits = edits_to_committed_lines(repo)  # ... but its committed line was edited
    assert edits and f"reviews.reviews-v1: {original} -> {changed}" in edits[0]
