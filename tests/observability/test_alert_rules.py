"""Alert rules and routing: unit-tested with promtool, checked with promtool and amtool.

`deploy/prometheus/tests/*_test.yml` feed input series to the rules and name
the alerts that must fire and, at other times or on other series, must not.
The tests here run them and check that every alert has both kinds of case,
its annotations, and a runbook section.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.tools import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_DIR,
    RUNBOOK,
    require,
)

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*_test.yml"))


def _alerts() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rule_and_test_files_exist() -> None:
    assert {p.stem for p in RULE_FILES} == {"serving", "model", "pipelines"}
    assert {p.stem.removesuffix("_test") for p in TEST_FILES} == {p.stem for p in RULE_FILES}


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(test_file: Path) -> None:
    promtool = require("promtool")["promtool"]
    result = _run([promtool, "test", "rules", test_file.name], test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A test expecting the wrong alert fails: the harness is not a rubber stamp."""
    promtool = require("promtool")["promtool"]
    broken = yaml.safe_load((PROMETHEUS_DIR / "tests" / "model_test.yml").read_text())
    broken["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "model.yml")]
    quiet = broken["tests"][1]["alert_rule_test"][0]
    assert quiet["exp_alerts"] == []
    quiet["exp_alerts"] = [{"exp_labels": {"severity": "ticket"}}]
    (tmp_path / "broken_test.yml").write_text(yaml.safe_dump(broken))
    result = _run([promtool, "test", "rules", "broken_test.yml"], tmp_path)
    assert result.returncode != 0


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - firing == set(), "alerts no test makes fire"
    assert names - quiet == set(), "alerts no test keeps quiet"


def _anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the markdown headings."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_alert_has_annotations_and_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for rule in _alerts():
        notes = rule.get("annotations", {})
        assert {"summary", "description", "runbook_url"} <= set(notes), rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"page", "ticket"}, rule["alert"]
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/runbook.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/runbook.md has no section for {rule['alert']}"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_promtool_check_config(config: str) -> None:
    promtool = require("promtool")["promtool"]
    result = _run([promtool, "check", "config", config], PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_check_config() -> None:
    amtool = require("amtool")["amtool"]
    result = _run([amtool, "check-config", str(ALERTMANAGER_CONFIG)], ALERTMANAGER_CONFIG.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=DriftloopApiDown", "severity=page"], "on-call-pager"),
        (["alertname=DriftloopDriftDetected", "severity=ticket"], "team-tickets"),
    ],
)
def test_alertmanager_routes_pages_and_tickets(labels: list[str], receiver: str) -> None:
    amtool = require("amtool")["amtool"]
    result = _run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels],
        ALERTMANAGER_CONFIG.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver
