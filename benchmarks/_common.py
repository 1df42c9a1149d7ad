"""Shared helpers: result rows, the emulator in a child process, child-process probes, input files."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work"
PY = sys.executable
API_KEY = "k"
CONN_ID = "here_batch_default"
GEOCODE = "serviceHrn=hrn:here:service::olp-here:search-geocode-7"


@dataclass
class Row:
    """One line of the result table. ``ok`` is None for an informational row."""

    id: str
    what: str
    measured: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("pass" if self.ok else "MISS")


def peak_rss_mb() -> float:
    """This process's peak RSS so far, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's current RSS, MB (from /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class RssSampler:
    """Samples this process's current RSS every few ms in a thread; ``growth_mb`` = peak - start.

    Unlike ``ru_maxrss`` (a high-water mark that Airflow's import already set high), this sees a
    transfer's own peak even when it stays below the import's.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self.start_mb = self.peak_mb = current_rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, current_rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb


def child_env(base_url: str | None = None, airflow_home: Path | None = None) -> dict[str, str]:
    """Environment of a child process: the repo on the path, Airflow pointed at a temp home."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONTRACEMALLOC", None)
    if airflow_home is not None:
        env["AIRFLOW_HOME"] = str(airflow_home)
        env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        env["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    if base_url is not None:
        env["AIRFLOW_CONN_HERE_BATCH_DEFAULT"] = json.dumps(
            {"conn_type": "here_batch", "host": base_url, "password": API_KEY}
        )
    return env


def run_child(
    module: str, payload: dict[str, Any], env: dict[str, str], timeout: float, log: Path | None = None
) -> dict[str, Any]:
    """Run ``python -m <module> --child <json>``; its last stdout line is a JSON result.

    ``log``: send the child's stderr (its log lines) to this file instead of memory.
    """
    with contextlib.ExitStack() as stack:
        err: Any = stack.enter_context(log.open("w")) if log is not None else subprocess.PIPE
        proc = subprocess.run(
            [PY, "-m", module, "--child", json.dumps(payload)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=timeout,
            check=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        stderr = log.read_text(errors="replace") if log is not None else (proc.stderr or "")
        tail = "\n".join(stderr.splitlines()[-25:])
        raise RuntimeError(f"{module} child failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory under benchmarks/.work (git-ignored), always removed."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=WORK))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Emulator:
    """The emulator CLI in its own process on a free loopback port; stopped by its pid on exit."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> Emulator:
        args = [PY, "-m", "airflow_here_batch.emulator", "--host", "127.0.0.1", "--port", "0", "--quiet"]
        args += ["--data-dir", str(self.data_dir)]
        for key, value in self.settings.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.__exit__()
            raise RuntimeError(f"emulator did not start (first line {line!r})")
        self.base_url = line
        return self

    @property
    def root_url(self) -> str:
        return self.base_url[: -len("/v7")]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def admin(self) -> Any:
        from airflow_here_batch.emulator.admin import EmulatorAdmin

        return EmulatorAdmin(self.root_url, timeout=600)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


_STREETS = [
    "Chausseestraße", "Invalidenstraße", "Friedrichstraße", "Hauptstraße", "Bahnhofstraße",
    "Gartenweg", "Lindenallee", "Schillerstraße", "Goethestraße", "Marktplatz", "Kirchgasse",
    "Rue de Rivoli", "Main Street", "High Street", "Via Roma", "Calle Mayor", "Oak Avenue",
]
_CITIES = [
    ("10115", "Berlin", "DEU"), ("20095", "Hamburg", "DEU"), ("80331", "München", "DEU"),
    ("50667", "Köln", "DEU"), ("60311", "Frankfurt", "DEU"), ("75001", "Paris", "FRA"),
    ("SW1A", "London", "GBR"), ("00184", "Roma", "ITA"), ("28013", "Madrid", "ESP"),
    ("10001", "New York", "USA"), ("1010", "Wien", "AUT"), ("8001", "Zürich", "CHE"),
]


def write_geocode_input(
    path: Path,
    records: int,
    *,
    seed: int = 7,
    pad_to: int = 0,
    limit: int | None = None,
    distinct: int | None = None,
) -> int:
    """A geocode input (``recId|q|in[|limit]``) of ``records`` addresses; returns its size in bytes.

    Every address is different unless ``distinct`` is given: then the queries cycle through that many
    addresses (the emulator caches answers per job, so repeated queries are much cheaper).

    ``pad_to`` lengthens each query with a realistic free-text addition (apartment, c/o, notes) until
    the line is about that many bytes, to reach HERE's 500 MB input limit within its 1M-record limit.
    """
    rng = random.Random(seed)
    header = "recId|q|in" + ("|limit" if limit else "") + "\n"
    notes = ["c/o", "Hinterhaus", "Aufgang", "Etage", "Apt", "Suite", "Gebäude", "Tor", "Lieferzone"]
    size = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(header)
        size += len(header.encode())
        batch: list[str] = []
        for i in range(records):
            postal, city, cc = _CITIES[rng.randrange(len(_CITIES))]
            number = (i % distinct if distinct else i) + 1
            q = f"{_STREETS[rng.randrange(len(_STREETS))]} {number}, {postal} {city}"
            if distinct:  # the same address every time this number comes round
                postal, city, cc = _CITIES[number % len(_CITIES)]
                q = f"{_STREETS[number % len(_STREETS)]} {number}, {postal} {city}"
            if pad_to:
                extra = []
                while len(q) + sum(len(e) + 2 for e in extra) < pad_to - 40:
                    extra.append(f"{notes[rng.randrange(len(notes))]} {rng.randrange(1, 100000)}")
                q = q + ", " + ", ".join(extra) if extra else q
            line = f"R{i:07d}|{q}|countryCode:{cc}" + (f"|{limit}" if limit else "") + "\n"
            batch.append(line)
            if len(batch) >= 10_000:
                text = "".join(batch)
                fh.write(text)
                size += len(text.encode())
                batch = []
        text = "".join(batch)
        fh.write(text)
        size += len(text.encode())
    return size


def wait_job(
    base_url: str,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float,
    interval: float = 0.1,
) -> dict[str, Any]:
    """Poll a job (stdlib HTTP, bounded) until ``until(body)``; returns its detail body."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base_url}/batch/jobs/{job_id}?apiKey={API_KEY}", timeout=60) as r:
            body = json.loads(r.read())
        if until(body):
            return body  # type: ignore[no-any-return]
        if body["status"] in ("failure", "deleted", "stopped", "completed"):
            raise RuntimeError(f"job {job_id} ended {body['status']}")
        time.sleep(interval)
    raise TimeoutError(f"job {job_id} not as expected within {timeout:.0f} s")


def wait_completed(base_url: str, job_id: str, timeout: float, interval: float = 0.1) -> dict[str, Any]:
    """Poll a job until it is completed; returns its detail body."""
    return wait_job(base_url, job_id, lambda body: body["status"] == "completed", timeout, interval)


def create_job(base_url: str, body: bytes, query: str, timeout: float = 600) -> dict[str, Any]:
    """``POST /batch/jobs`` with stdlib HTTP (setup only, not measured)."""
    import urllib.request

    request = urllib.request.Request(
        f"{base_url}/batch/jobs?apiKey={API_KEY}&{query}",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def raise_fd_limit() -> None:
    """Soft open-files limit up to the hard one (thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fmt_mb_s(value: float) -> str:
    return f"{value:.0f} MB/s"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
