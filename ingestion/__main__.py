"""Command line: snapshot and validate raw sources by hand, outside Airflow.

    python -m ingestion validate --source imdb --path ../shared/datasets/imdb_50k.csv.gz

prints the per-source counts, the quarantine file and the Data Docs location;
exits 1 with the error message when a file is bad or the run fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from core.settings import get_settings
from ingestion.errors import IngestionError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="snapshot the given sources into a run folder and validate them"
    )
    validate.add_argument(
        "--source",
        action="append",
        required=True,
        help="a source key of contracts/sources.yaml (repeat for several sources)",
    )
    validate.add_argument(
        "--path",
        action="append",
        default=[],
        help="the file of each --source, in the same order (default: its `file` in the datasets dir)",
    )
    validate.add_argument(
        "--run-dir",
        type=Path,
        help="run folder (default: <DRIFTLOOP_HOME>/lake/manual-<UTC time>)",
    )
    validate.add_argument("--max-quarantine-share", type=float, default=0.05)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.path and len(args.path) != len(args.source):
        print(
            f"error: {len(args.source)} --source but {len(args.path)} --path; give one path per "
            "source or none",
            file=sys.stderr,
        )
        return 2
    paths = args.path or [None] * len(args.source)
    run_dir = args.run_dir or get_settings().lake_dir / datetime.now(UTC).strftime(
        "manual-%Y%m%dT%H%M%SZ"
    )
    from ingestion.ingest import snapshot_sources
    from ingestion.validate import validate_sources

    sources = [
        {"source": key, **({"path": path} if path else {})}
        for key, path in zip(args.source, paths, strict=True)
    ]
    try:
        manifest = snapshot_sources(sources, str(run_dir))
        report = validate_sources(
            manifest, str(run_dir), max_quarantine_share=args.max_quarantine_share
        )
    except IngestionError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    summary = {k: report[k] for k in ("rows_read", "rows_accepted", "rows_quarantined")}
    print(
        json.dumps({**summary, "quarantined_by_reason": report["quarantined_by_reason"]}, indent=2)
    )
    print(f"accepted:   {report['accepted_path']}")
    print(f"quarantine: {report['quarantine_path']}")
    print(f"data docs:  {report['data_docs_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
