"""The pre-commit hook: `make setup` installs it in a clone, and it stops a bad commit.

Runs in throw-away git repositories that borrow this checkout's Makefile, config and
.venv, so nothing here touches the repository's own hooks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (VENV / "bin" / "pre-commit").exists(),
    reason="needs git and .venv/bin/pre-commit (make setup)",
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_CEILING_DIRECTORIES=str(tmp_path),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull,
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
    )
    return env


def _checkout_like(root: Path) -> Path:
    """A folder with the files `make hooks` and the hooks read, and a .venv link."""
    root.mkdir()
    makefile = (REPO_ROOT / "Makefile").read_text()
    included = re.findall(r"^-?include\s+(\S+)", makefile, flags=re.MULTILINE)
    names = ["Makefile", "pyproject.toml", ".pre-commit-config.yaml", "requirements/dev.lock"]
    for name in [*names, *included]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, root / name)
        os.utime(root / name, (0, 0))  # older than the venv's stamp: make must not reinstall
    (root / ".venv").symlink_to(VENV)
    return root


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_make_hooks_outside_git_does_not_fail(tmp_path: Path) -> None:
    root = _checkout_like(tmp_path / "plain")
    done = _run(["make", "--no-print-directory", "hooks"], root, _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "not a git checkout" in done.stdout
    assert not (root / ".git").exists()


def test_hook_installed_and_blocks_unformatted_code(tmp_path: Path) -> None:
    env = _env(tmp_path)
    root = _checkout_like(tmp_path / "clone")
    assert _run(["git", "init", "-q"], root, env).returncode == 0
    done = _run(["make", "--no-print-directory", "hooks"], root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    hook = root / ".git" / "hooks" / "pre-commit"
    assert hook.exists() and "pre-commit" in hook.read_text()

    (root / ".gitignore").write_text(".venv\n")
    (root / "monitoring").mkdir()
    (root / "monitoring" / "__init__.py").write_text("")
    bad = root / "monitoring" / "numbers.py"
    bad.write_text("def double(x: int) -> int:\n    return x*2\n")
    _run(["git", "add", "-A"], root, env)
    refused = _run(["git", "commit", "-q", "-m", "unformatted"], root, env)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "ruff format" in out and "Failed" in out
    assert bad.read_text() == "def double(x: int) -> int:\n    return x * 2\n"  # fixed in place

    bad.write_text("def double(x: int) -> int:\n    return str(x)\n")
    _run(["git", "add", "-A"], root, env)
    refused = _run(["git", "commit", "-q", "-m", "ill-typed"], root, env)
    assert refused.returncode != 0
    assert "Incompatible return value type" in refused.stdout + refused.stderr

    bad.write_text("def double(x: int) -> int:\n    return x * 2\n")
    _run(["git", "add", "-A"], root, env)
    accepted = _run(["git", "commit", "-q", "-m", "fine"], root, env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_linked_worktree_leaves_shared_hooks_alone(tmp_path: Path) -> None:
    env = _env(tmp_path)
    root = _checkout_like(tmp_path / "main")
    (root / ".gitignore").write_text(".venv\n")
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        assert _run(args, root, env).returncode == 0
    linked = tmp_path / "linked"
    assert _run(["git", "worktree", "add", "-q", str(linked)], root, env).returncode == 0
    (linked / ".venv").symlink_to(VENV)
    os.utime(linked / "requirements" / "dev.lock", (0, 0))
    os.utime(linked / "pyproject.toml", (0, 0))
    done = _run(["make", "--no-print-directory", "hooks"], linked, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (root / ".git" / "hooks" / "pre-commit").exists()


@pytest.mark.parametrize(
    "hook", ["check-yaml", "check-json", "check-toml", "check-added-large-files"]
)
def test_repository_passes_read_only_hooks(hook: str, tmp_path: Path) -> None:
    """The checks that only read: every committed YAML/JSON/TOML file parses, none is huge."""
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    env = _env(tmp_path)
    env.pop("GIT_CEILING_DIRECTORIES")
    done = _run([str(VENV / "bin" / "pre-commit"), "run", hook, "--all-files"], REPO_ROOT, env)
    assert done.returncode == 0, done.stdout + done.stderr
