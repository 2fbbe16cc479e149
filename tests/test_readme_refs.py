"""The README's "What is guaranteed" names the tests that hold each promise: every one it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = re.compile(r"`(test_\w+\.py)?(?:::)?(test_\w+)?`")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_every_test_the_guarantees_name_exists() -> None:
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), "What is guaranteed")
    files = {p.name: p for p in (ROOT / "tests").rglob("test_*.py")}
    named = 0
    current: Path | None = None
    for m in REF.finditer(section):
        module, func = m.group(1), m.group(2)
        if module is not None:
            assert module in files, f"README names {module}, which is not in tests/"
            current = files[module]
            named += 1
        if func is not None:
            assert current is not None, f"README names ::{func} before any test file"
            assert re.search(rf"^(async )?def {func}\b", current.read_text(encoding="utf-8"), re.M), (
                f"README names {current.name}::{func}, which is not defined there"
            )
            named += 1
    assert named >= 20, f"only {named} test references found: has the section's form changed?"
