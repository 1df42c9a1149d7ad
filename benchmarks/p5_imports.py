"""P5: DAG-parse cost of the provider: importing the operator, sensor and trigger modules.

Each run is a fresh interpreter that times ``import airflow.sdk`` (the baseline every DAG file pays)
and then, in the same process, the three provider modules (the added cost). Median of several runs.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from benchmarks._common import PY, ROOT, Row, child_env, median

TARGET_MS = 20.0
PROBE = """
import json, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
import airflow_here_batch.operators.batch_job
import airflow_here_batch.sensors.batch_job
import airflow_here_batch.triggers.batch_job
t2 = time.perf_counter()
print(json.dumps({"sdk": t1 - t0, "added": t2 - t1}))
"""


def measure(runs: int, warm: bool = True) -> tuple[list[float], list[float]]:
    sdk: list[float] = []
    added: list[float] = []
    with tempfile.TemporaryDirectory(prefix="p5-airflow-home-") as home:
        env = child_env(airflow_home=Path(home))
        # An installed package has its bytecode compiled; so does this measurement (the warm-up run
        # writes it). With PYTHONDONTWRITEBYTECODE every run would time the compiler instead.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for _ in range(runs + warm):  # a first run warms the page cache and .pyc files; dropped
            out = subprocess.run(
                [PY, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            sdk.append(data["sdk"] * 1000)
            added.append(data["added"] * 1000)
    return sdk[warm:], added[warm:]


def run(quick: bool) -> list[Row]:
    sdk, added = measure(1, warm=False) if quick else measure(9)
    base, extra = median(sdk), median(added)
    return [
        Row(
            "P5",
            f"import operator+sensor+trigger modules (median of {len(sdk)} fresh interpreters)",
            f"+{extra:.0f} ms",
            f"{base:.0f} ms (airflow.sdk)",
            f"{(base + extra) / base:.2f}x",
            f"<= +{TARGET_MS:.0f} ms",
            extra <= TARGET_MS,
        )
    ]


__all__ = ["run"]

if __name__ == "__main__":  # pragma: no cover
    for row in run(quick=False):
        print(row)
