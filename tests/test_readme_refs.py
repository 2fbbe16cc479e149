"""docs/guarantees.md ("What is guaranteed") names the tests that hold each promise: every one it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = re.compile(r"`(test_\w+\.py)?(?:::)?(test_\w+)?`")


def test_every_test_the_guarantees_name_exists() -> None:
    section = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    assert section.startswith("# What is guaranteed\n")
    files = {p.name: p for p in (ROOT / "tests").rglob("test_*.py")}
    named = 0
    current: Path | None = None
    for m in REF.finditer(section):
        module, func = m.group(1), m.group(2)
        if module is not None:
            assert module in files, f"docs/guarantees.md names {module}, which is not in tests/"
            current = files[module]
            named += 1
        if func is not None:
            assert current is not None, f"docs/guarantees.md names ::{func} before any test file"
            assert re.search(rf"^(async )?def {func}\b", current.read_text(encoding="utf-8"), re.M), (
                f"docs/guarantees.md names {current.name}::{func}, which is not defined there"
            )
            named += 1
    assert named >= 20, f"only {named} test references found: has the section's form changed?"
