"""Generate the published JSON Schemas from the contracts (the Structs are the source of truth).

python -m maskline.contracts.schema          # rewrite contracts/schemas/
python -m maskline.contracts.schema --check  # exit 1 if the committed files are stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from maskline.contracts import audit_v1, common_v1, dataset_v1, model_v1, seg_v1
from maskline.contracts.envelope import Envelope

SCHEMA_DIR = Path(__file__).parent / "schemas"


def catalog() -> dict[str, type[Any]]:
    """File stem → the type its schema describes: one envelope per subject, plus records."""
    types: dict[str, type[Any]] = {}
    for family in (seg_v1.PAYLOADS, model_v1.PAYLOADS, dataset_v1.PAYLOADS):
        for subject, payload in family.items():
            types[subject] = Envelope[payload]  # type: ignore[valid-type]
    types[dataset_v1.FAILED] = Envelope[common_v1.JobFailed]
    types[model_v1.FAILED] = Envelope[common_v1.JobFailed]
    types["dlq.record"] = common_v1.DeadLetter
    types["audit.v1.record"] = audit_v1.AuditRecord
    return types


def render() -> dict[str, str]:
    files = {}
    for stem, kind in catalog().items():
        schema = msgspec.json.schema(kind)
        schema["$id"] = f"https://maskline.dev/schemas/{stem}.json"
        schema["title"] = stem
        files[f"{stem}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    files = render()
    if args.check:
        stale = [n for n, text in files.items() if not (SCHEMA_DIR / n).exists() or (SCHEMA_DIR / n).read_text() != text]
        extra = sorted({p.name for p in SCHEMA_DIR.glob("*.json")} - set(files))
        if stale or extra:
            print(f"stale schemas: {stale}, unexpected: {extra}; run python -m maskline.contracts.schema", file=sys.stderr)
            raise SystemExit(1)
        return
    SCHEMA_DIR.mkdir(exist_ok=True)
    for old in SCHEMA_DIR.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (SCHEMA_DIR / name).write_text(text)
    print(f"wrote {len(files)} schemas to {SCHEMA_DIR}")


if __name__ == "__main__":
    main()
