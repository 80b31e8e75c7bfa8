"""Write an env file for docker-compose.yml from .env.example with fresh secrets.

    python deploy/docker/make_env.py                 # .env, unless it exists
    python deploy/docker/make_env.py --out /tmp/x.env --set API_PORT=18000 --force

Every `<generate>` placeholder becomes a random URL-safe token and
`<generate-fernet>` a Fernet key, so no two deployments share a secret and
none is ever committed. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / ".env.example"
LINE = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def fresh_value(placeholder: str) -> str:
    """The secret that replaces a placeholder of .env.example."""
    if placeholder == "<generate-fernet>":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if placeholder == "<generate>":
        return secrets.token_urlsafe(32)
    return placeholder


def render(example: str, overrides: dict[str, str]) -> str:
    """.env.example with placeholders filled and `overrides` applied (appended if new)."""
    out: list[str] = []
    seen: set[str] = set()
    for line in example.splitlines():
        match = LINE.match(line)
        if not match:
            out.append(line)
            continue
        key = match["key"]
        seen.add(key)
        value = overrides.get(key, fresh_value(match["value"]))
        out.append(f"{key}={value}")
    out.extend(f"{key}={value}" for key, value in overrides.items() if key not in seen)
    return "\n".join(out) + "\n"


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not LINE.match(f"{key}=x"):
            raise SystemExit(f"--set expects KEY=VALUE with an upper-case KEY, got {pair!r}")
        result[key] = value
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".env")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists: keeping it (--force writes a new one)")
        return 0
    text = render(EXAMPLE.read_text(), parse_overrides(args.overrides))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    print(f"wrote {args.out} with fresh secrets (Airflow login: see AIRFLOW_ADMIN_PASSWORD there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
