"""The Airflow range in ``pyproject.toml`` is exactly the set CI tests (scripts/test_airflow_versions.sh).

The tested set is one lock per minor, ``requirements/airflow-3.N.txt`` (3.3's is ``lock.txt``, the main
lock), each pinning that minor's newest patch; the script runs every such lock.
"""

from __future__ import annotations

import re
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQS = ROOT / "requirements"


def _declared() -> Requirement:
    """The installed distribution's metadata (= pyproject.toml; scripts/_venv.sh reinstalls on a change)."""
    reqs = [Requirement(r) for r in requires("airflow-here-batch") or []]
    (req,) = [r for r in reqs if r.name == "apache-airflow" and not r.marker]
    return req


def _pin(path: Path) -> Version:
    pins = re.findall(r"^apache-airflow==(\S+)", path.read_text(encoding="utf-8"), flags=re.M)
    assert len(pins) == 1, f"{path} must pin apache-airflow once, found {pins}"
    return Version(pins[0])


def _tested() -> dict[str, Version]:
    """``{"3.0": Version("3.0.6"), ...}`` from the lock files."""
    tested = {}
    for lock in sorted(REQS.glob("airflow-*.txt")):
        minor = lock.stem.removeprefix("airflow-")
        version = _pin(lock)
        assert f"{version.major}.{version.minor}" == minor, f"{lock.name} pins {version}"
        assert _pin(lock.with_suffix(".in")) == version, f"{lock.name} is stale: regenerate it"
        tested[minor] = version
    return tested


def test_each_minor_has_a_lock_and_the_main_lock_is_the_newest() -> None:
    tested = _tested()
    assert len(tested) >= 2
    newest = max(tested, key=Version)
    assert (REQS / f"airflow-{newest}.txt").resolve() == (REQS / "lock.txt").resolve()
    assert _pin(REQS / "lock.txt") == tested[newest]


def test_declared_range_equals_the_tested_set() -> None:
    spec = _declared().specifier
    tested = _tested()
    for version in tested.values():
        assert spec.contains(version), f"pyproject.toml excludes the tested {version}"
    # No untested minor is admitted: Airflow 2.x, and the minors around the tested ones.
    candidates = [f"2.{m}" for m in range(12)] + [f"3.{m}" for m in range(20)] + [f"4.{m}" for m in range(3)]
    admitted = {c for c in candidates if any(spec.contains(Version(f"{c}.{p}")) for p in range(30))}
    assert admitted == set(tested), f"pyproject.toml admits {sorted(admitted)}, CI tests {sorted(tested)}"
    # The lower bound is the oldest tested patch: no older patch of that minor slips in.
    oldest = min(tested.values())
    older = Version(f"{oldest.major}.{oldest.minor}.{oldest.micro - 1}") if oldest.micro else None
    assert older is None or not spec.contains(older), f"pyproject.toml admits {older}, untested"


def test_the_script_and_the_lock_generator_cover_the_same_minors() -> None:
    script = (ROOT / "scripts" / "test_airflow_versions.sh").read_text(encoding="utf-8")
    assert "requirements/airflow-3.*.txt" in script  # the script's default list is the locks
    generator = (ROOT / "scripts" / "lock_airflow_versions.sh").read_text(encoding="utf-8")
    released = set(re.findall(r"\[(\d+\.\d+)\]=", generator))
    assert released == set(_tested()), f"scripts/lock_airflow_versions.sh knows {sorted(released)}"
