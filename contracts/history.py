"""The feature-contract guard: a committed, append-only history of version -> fingerprint.

A contract module names its feature definitions with `FEATURE_CONTRACT_VERSION` and can
hash what `build_features` returns (`feature_fingerprint()`). Comparing that hash with a
constant in the same module is easy to sidestep: change a feature, paste the new hash,
keep the version. So the hashes live in `fingerprints.yaml` beside the contract module,
one line per version ever released, and three checks read it:

- `check_contract` (run by the tests and `python -m contracts.history`): the fingerprint
  computed now must be the one recorded for the current version; a different one means
  the features changed and the version must be bumped.
- `recorded_changes` (tests, with git): a line once committed is never edited.
- `verify_served_model` (serving, at every model load): the version a model was
  registered with must be recorded with the fingerprint this process computes, so a
  server whose features drifted from the history refuses to serve.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import yaml

HISTORY_FILE = "fingerprints.yaml"


class ContractHistoryError(ValueError):
    """The features, the contract version and the recorded history disagree."""


def history_path(contract: ModuleType) -> Path:
    """The history file beside a contract module (contracts/fingerprints.yaml in this repo)."""
    source = getattr(contract, "__file__", None)
    if source is None:
        raise ContractHistoryError(f"contract module {contract.__name__} has no file")
    return Path(source).with_name(HISTORY_FILE)


def parse_history(text: str, where: str = HISTORY_FILE) -> dict[str, dict[str, str]]:
    """{use case: {version: fingerprint}} from the YAML text, shape-checked."""
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ContractHistoryError(f"{where}: expected a mapping of use case -> versions")
    history: dict[str, dict[str, str]] = {}
    for use_case, versions in raw.items():
        if not isinstance(versions, dict) or not versions:
            raise ContractHistoryError(f"{where}: {use_case} must map version -> fingerprint")
        history[str(use_case)] = {str(v): str(f) for v, f in versions.items()}
    return history


def load_history(path: Path) -> dict[str, dict[str, str]]:
    """The history in `path`; an absent file is an empty history."""
    if not path.exists():
        return {}
    return parse_history(path.read_text(), str(path))


@lru_cache(maxsize=32)
def _computed(module_name: str, compute: Callable[[], str]) -> str:
    return compute()


def computed_fingerprint(contract: ModuleType) -> str:
    """`contract.feature_fingerprint()`, once per process (features do not change at run time)."""
    return _computed(contract.__name__, contract.feature_fingerprint)


def forget_computed() -> None:
    """Drop the per-process fingerprints (tests that patch a feature function)."""
    _computed.cache_clear()


def check_contract(
    contract: ModuleType,
    fingerprint: str,
    history: Mapping[str, Mapping[str, str]],
    where: str = HISTORY_FILE,
) -> None:
    """Raise ContractHistoryError unless `fingerprint` is the one recorded for the version."""
    use_case, version = contract.USE_CASE, contract.FEATURE_CONTRACT_VERSION
    recorded = history.get(use_case, {})
    if version not in recorded:
        raise ContractHistoryError(
            f"{use_case}: contract version {version!r} is not in {where}; add the line "
            f"`{version}: {fingerprint}` under `{use_case}:` (keep the older lines)"
        )
    if recorded[version] != fingerprint:
        known = ", ".join(f"{v}={f}" for v, f in recorded.items())
        raise ContractHistoryError(
            f"{use_case}: build_features changed its output under contract version {version!r} "
            f"(recorded {recorded[version]}, computed {fingerprint}). Bump "
            f"FEATURE_CONTRACT_VERSION in {contract.__name__} to a new version and add "
            f"`<new version>: {fingerprint}` under `{use_case}:` in {where}; do not edit the "
            f"recorded line: models trained on {version} must keep being refused features "
            f"they were not trained on. History: {known}"
        )
    constant = getattr(contract, "FEATURE_FINGERPRINT", fingerprint)
    if constant != fingerprint:
        raise ContractHistoryError(
            f"{use_case}: {contract.__name__}.FEATURE_FINGERPRINT is {constant} but the "
            f"features hash to {fingerprint} (recorded for {version}); set it to {fingerprint}"
        )


def check_use_case_contract(contract: ModuleType) -> None:
    """check_contract against the history file beside the contract module."""
    path = history_path(contract)
    check_contract(contract, computed_fingerprint(contract), load_history(path), str(path))


def recorded_changes(
    older: Mapping[str, Mapping[str, str]], newer: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Lines of `older` that `newer` edits or drops (the history is append-only)."""
    changes = []
    for use_case, versions in older.items():
        for version, fingerprint in versions.items():
            now = newer.get(use_case, {}).get(version)
            if now != fingerprint:
                changes.append(f"{use_case}.{version}: {fingerprint} -> {now}")
    return changes


def verify_served_model(
    contract: ModuleType, model_version: str | None, model_fingerprint: str | None
) -> None:
    """Refuse (ContractHistoryError) a model whose features this process does not compute.

    `model_version` is the contract version the model was registered with; it must be
    recorded in the history with the fingerprint computed here. `model_fingerprint`, the
    hash the training run recorded (when present), must equal it too.
    """
    computed = computed_fingerprint(contract)
    path = history_path(contract)
    recorded = load_history(path).get(contract.USE_CASE, {})
    if model_version not in recorded:
        raise ContractHistoryError(
            f"contract version {model_version!r} is not in {path} for {contract.USE_CASE}; "
            "this server cannot tell which features that model was trained on"
        )
    if recorded[model_version] != computed:
        raise ContractHistoryError(
            f"this server's features hash to {computed}, but contract version "
            f"{model_version!r} was recorded as {recorded[model_version]}: the feature code "
            "deployed here is not the one that version names (changed without a version bump?)"
        )
    if model_fingerprint and model_fingerprint != computed:
        raise ContractHistoryError(
            f"the model was trained on features hashing to {model_fingerprint}; this server "
            f"computes {computed}"
        )


def main(argv: list[str] | None = None) -> int:
    """Check every registered use case's contract against its history."""
    parser = argparse.ArgumentParser(prog="python -m contracts.history", description=__doc__)
    parser.parse_args(argv)
    from core.usecases import load_registry

    failures = 0
    for name, use_case in load_registry().items():
        try:
            check_use_case_contract(use_case.contract)
        except ContractHistoryError as error:
            failures += 1
            print(f"FAIL {name}: {error}", file=sys.stderr)
        else:
            contract = use_case.contract
            print(
                f"ok   {name}: {contract.FEATURE_CONTRACT_VERSION} {contract.FEATURE_FINGERPRINT}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
