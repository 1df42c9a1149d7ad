"""HERE's job-status bodies for every status (the seed), vendored in ``tests/fixtures/seed/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED_DIR = Path(__file__).resolve().parent / "fixtures" / "seed"


def seed_bodies() -> dict[str, dict[str, Any]]:
    """Every vendored seed body, keyed by its status (each file is named after its body's status)."""
    bodies: dict[str, dict[str, Any]] = {}
    for path in sorted(SEED_DIR.glob("*.json")):
        body = json.loads(path.read_text("utf-8"))
        if body.get("status") != path.stem:
            raise AssertionError(f"{path.name} holds a {body.get('status')!r} body")
        bodies[path.stem] = body
    return bodies
