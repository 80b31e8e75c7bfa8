"""Dashboards as code: the committed JSON is what the generator builds, wired to the datasource."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.observability.tools import REPO_ROOT, load_dashboards_module

GRAFANA = REPO_ROOT / "deploy" / "grafana"


def test_committed_json_matches_the_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_on_stale_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_dashboards_module()
    monkeypatch.setattr(module, "OUT_DIR", tmp_path)
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0
    stale = tmp_path / "serving.json"
    stale.write_text(stale.read_text().replace("driftloop_http_requests_total", "renamed_total"))
    assert module.main(["--check"]) == 1


def test_three_dashboards_every_panel_queries_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    module = load_dashboards_module()
    titles = set()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        titles.add(board["title"])
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels, path.name
        for panel in panels:
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
        assert module.queries(board)
    assert titles == {
        "driftloop / Serving",
        "driftloop / Model quality & drift",
        "driftloop / Pipelines",
    }
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "driftloop.yml").read_text()
    )
    assert providers["providers"][0]["type"] == "file"
