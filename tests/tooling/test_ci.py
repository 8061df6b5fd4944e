"""CI runs what the README says it runs, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_make_targets_the_readme_names_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
    sentence = re.search(r"CI \(`\.ci/run`.*?\) runs exactly (.*?) in that", readme, re.S)
    assert sentence, "the README no longer says what CI runs"
    promised = re.findall(r"`(make [a-z-]+)`", sentence.group(1))
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script if line.strip().startswith("make ")]
    assert commands == promised == ["make lint", "make typecheck", "make test"]
