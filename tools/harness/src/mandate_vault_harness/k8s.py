"""Kubernetes manifests as the deploy tests read them: where they live, the API version they
are validated against, the command-line tools that render them, and lookups by kind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mandate_vault_harness.services import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"


def tool(name: str, hint: str) -> str:
    """A command installed beside this interpreter (a PyPI wheel) or on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed: {hint}"
        raise RuntimeError(msg)
    return path


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert name in found, f"no {kind} {name}"
    return found[name]


def strict_validation(docs: list[dict[str, Any]], path: Path) -> tuple[int, str]:
    """kubernetes-validate --strict on `docs` (written to `path`): exit status and output."""
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    validator = tool("kubernetes-validate", "a dev dependency: uv sync --all-packages")
    result = subprocess.run(
        [validator, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr
