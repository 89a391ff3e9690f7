"""Rewrite fixtures/expected/ from the current code. Then REVIEW every change with `git diff fixtures/expected`
card by card before committing: a golden file is a clinician-reviewed statement, not a snapshot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.cli import expected_path, mask_uuids, replay

ROOT = Path(__file__).resolve().parent.parent


def main(names: list[str]) -> int:
    for fixture in sorted((ROOT / "fixtures" / "requests").glob("*.json")):
        if names and not any(n in fixture.name for n in names):
            continue
        response, hook, status = replay(fixture)
        if status != 200:
            print(f"{fixture.name}: HTTP {status}", file=sys.stderr)
            return 1
        expected_path(fixture, hook).write_text(json.dumps(mask_uuids(response), indent=2, ensure_ascii=False) + "\n")
    print("written; now review: git diff --word-diff fixtures/expected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
