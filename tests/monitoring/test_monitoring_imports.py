from __future__ import annotations

import subprocess
import sys

from core.settings import REPO_ROOT


def test_importing_monitoring_does_not_load_evidently() -> None:
    """Evidently takes ~12 s to import; only running a drift check may pay for it."""
    code = (
        "import sys\n"
        "import monitoring.drift, monitoring.performance, monitoring.reference, monitoring.psi\n"
        "print('evidently' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
