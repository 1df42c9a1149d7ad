"""P7: a 3,000,000-record geocode input split into jobs of at most 1,000,000 records, run side by side.

The emulator runs in its own process (``records_per_second=inf``, ``queue_delay=0``,
``--max-records 1000000``, ``--max-running-jobs 3``, two worker processes).

* **Measured**: the split path as Airflow runs it, task by task, each task in its own process forked
  from a "worker" that has Airflow and the provider imported (as Airflow 3's supervisor forks a task
  process): ``PlanSplitOperator.execute`` (validate and cut into object storage, ``file://``), one
  ``RunSplitPartOperator.execute`` per part side by side (upload, start, defer), one "triggerer"
  process running the parts' ``BatchJobTrigger.run()`` in one event loop, a resumed
  ``RunSplitPartOperator.part_done`` per part as soon as its event arrives (download next to the part),
  then ``MergeSplitResultsOperator.execute``. Wall time from the plan's start to the merged output.
  Peak RSS of every task process = its ``VmHWM`` (which includes the pages it shares with the worker
  it was forked from, as a real task process does).
* **Baseline**: the emulator's processing of the same jobs side by side: the three parts, cut
  beforehand (not timed), each uploaded, waited for and downloaded with ``HereBatchHook`` in its own
  thread, all at once (the limit allows 3). Wall time from the first upload to the last download.
* **Identity**: the merged results are compared byte for byte (SHA-256) with the results of one job
  over the whole input, on a second emulator that accepts 3,000,000 records.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Emulator, Row, child_env, run_child, workdir, write_geocode_input

WALL_TARGET = 1.3
RSS_TARGET_MB = 150.0


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---- child: the baseline (parts cut beforehand, three hook clients side by side) -------------------


def _baseline(p: dict[str, Any]) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from airflow_here_batch.api.polling import PollSchedule
    from airflow_here_batch.api.protocol import JobOptions
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    def one(path: str) -> float:
        hook = HereBatchHook()
        job = hook.create_job(Path(path), options=JobOptions(service="geocode"), compress=True)
        hook.wait_for_job(job.id, schedule=PollSchedule(0.5, 0.5), timeout=3600)
        hook.download_results(job.id, Path(path + ".results"))
        return time.monotonic()

    HereBatchHook().get_job  # noqa: B018 - imports warmed before the clock starts
    start = time.monotonic()
    with ThreadPoolExecutor(len(p["parts"])) as pool:
        ends = list(pool.map(one, p["parts"]))
    return {"wall_s": max(ends) - start, "rss_mb": _vm_hwm_mb()}


def _single(p: dict[str, Any]) -> dict[str, Any]:
    from airflow_here_batch.api.polling import PollSchedule
    from airflow_here_batch.api.protocol import JobOptions
    from airflow_here_batch.hooks.here_batch import HereBatchHook

    hook = HereBatchHook()
    job = hook.create_job(Path(p["input"]), options=JobOptions(service="geocode"), compress=True)
    hook.wait_for_job(job.id, schedule=PollSchedule(0.2, 0.5), timeout=3600)
    hook.download_results(job.id, Path(p["output"]))
    return {"sha256": _sha256(Path(p["output"])), "bytes": Path(p["output"]).stat().st_size}


# ---- child: the split path, task by task in forked task processes ----------------------------------


class _TI:
    """What the operators read from ``context["ti"]``."""

    def __init__(self, task_id: str, map_index: int = -1) -> None:
        self.dag_id, self.run_id, self.task_id = "p7_split", "bench_run", task_id
        self.map_index, self.try_number = map_index, 1

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _fork(task: Any) -> tuple[int, int]:
    """Run ``task()`` in a forked process; its JSON result (plus VmHWM) comes back on a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the task process
        os.close(read_end)
        code = 0
        try:
            result = {"ok": task(), "rss_mb": _vm_hwm_mb()}
        except BaseException as exc:  # reported to the parent
            result, code = {"error": repr(exc)}, 1
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(result, default=str) + "\n")
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, fd: int) -> dict[str, Any]:
    with os.fdopen(fd) as fh:
        text = fh.read()
    os.waitpid(pid, 0)
    result = json.loads(text.strip().splitlines()[-1]) if text.strip() else {"error": "no answer"}
    if "error" in result:
        raise RuntimeError(f"task process failed: {result['error']}")
    return result


def _split(p: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    from airflow_here_batch.operators.split import (
        MergeSplitResultsOperator,
        PlanSplitOperator,
        RunSplitPartOperator,
    )
    from airflow_here_batch.triggers.batch_job import BatchJobTrigger

    limit = p["limit"]
    run_kwargs = {"task_id": "geo.run", "service": "geocode", "poll_interval": 0.5, "max_poll_interval": 1.0}
    rss: dict[str, float] = {}

    def plan() -> Any:
        op = PlanSplitOperator(
            task_id="geo.plan", input=p["input"], split_id="geo", max_records_per_job=limit
        )
        return op.execute({"ti": _TI("geo.plan")})  # type: ignore[arg-type]

    def submit(index: int, part: dict[str, Any]) -> Any:
        op = RunSplitPartOperator(part=part, **run_kwargs)
        try:
            op.execute({"ti": _TI("geo.run", index)})  # type: ignore[arg-type]
        except TaskDeferred as deferred:
            return {"trigger": deferred.trigger.serialize(), "method": deferred.method_name}
        raise RuntimeError("the part did not defer")

    def triggerer(specs: list[dict[str, Any]], out_fd: int) -> None:
        async def one(spec: dict[str, Any]) -> None:
            trigger = BatchJobTrigger(**spec["trigger"][1])
            async for event in trigger.run():
                os.write(
                    out_fd, (json.dumps({"index": spec["index"], "event": event.payload}) + "\n").encode()
                )

        async def main() -> None:
            await asyncio.gather(*(one(spec) for spec in specs))

        asyncio.run(main())

    def resume(index: int, part: dict[str, Any], event: dict[str, Any]) -> Any:
        op = RunSplitPartOperator(part=part, **run_kwargs)
        return op.part_done({"ti": _TI("geo.run", index)}, event)  # type: ignore[arg-type]

    start = time.monotonic()
    planned = _collect(*_fork(plan))
    parts = planned["ok"]
    rss["plan"] = planned["rss_mb"]
    t_plan = time.monotonic() - start
    submitted = [_fork(lambda i=i, part=part: submit(i, part)) for i, part in enumerate(parts)]
    specs = []
    for i, (pid, fd) in enumerate(submitted):
        answer = _collect(pid, fd)
        rss[f"run[{i}] submit"] = answer["rss_mb"]
        specs.append({"index": i, **answer["ok"]})
    if any(s["method"] != "part_done" for s in specs):
        raise RuntimeError(f"a part waits for something else than its job: {specs}")
    # the triggerer: one process, every part's trigger in one loop; events stream back line by line
    events_read, events_write = os.pipe()
    triggerer_pid, triggerer_fd = _fork(lambda: triggerer(specs, events_write))
    os.close(events_write)
    resumed: list[tuple[int, int]] = []
    with os.fdopen(events_read) as events:
        for line in events:
            item = json.loads(line)
            if item["event"].get("status") != "success":
                raise RuntimeError(f"part {item['index']} ended: {item['event']}")
            i, event = item["index"], item["event"]
            resumed.append(_fork(lambda i=i, event=event: resume(i, parts[i], event)))
    rss["triggerer"] = _collect(triggerer_pid, triggerer_fd)["rss_mb"]
    results = []
    for pid, fd in resumed:
        answer = _collect(pid, fd)
        results.append(answer["ok"])
        rss[f"run[{answer['ok']['index']}] collect"] = answer["rss_mb"]

    def merge() -> Any:
        op = MergeSplitResultsOperator(task_id="geo.merge", parts=results, split_id="geo", cleanup_parts=True)
        return op.execute({"ti": _TI("geo.merge")})  # type: ignore[arg-type]

    merged = _collect(*_fork(merge))
    wall = time.monotonic() - start
    rss["merge"] = merged["rss_mb"]
    summary = merged["ok"]
    results_path = Path(summary["results"].removeprefix("file://"))
    return {
        "wall_s": wall,
        "plan_s": t_plan,
        "parts": [pt["records"] for pt in parts],
        "rss_mb": rss,
        "sha256": _sha256(results_path),
        "bytes": results_path.stat().st_size,
        "records": summary["records"],
    }


def _child(p: dict[str, Any]) -> dict[str, Any]:
    return {"baseline": _baseline, "single": _single, "split": _split}[p["mode"]](p)


# ---- the figure --------------------------------------------------------------------------------------


def _cut(source: Path, limit: int, work: Path) -> list[str]:
    """The baseline's parts: the input's header, then ``limit`` records each (setup, not timed)."""
    paths: list[str] = []
    with source.open("rb") as fh:
        header = fh.readline()
        out = None
        for n, line in enumerate(fh):
            if n % limit == 0:
                if out is not None:
                    out.close()
                paths.append(str(work / f"cut-{len(paths) + 1}.csv"))
                out = open(paths[-1], "wb")  # noqa: SIM115 - closed at the next part or below
                out.write(header)
            assert out is not None
            out.write(line)
        if out is not None:
            out.close()
    return paths


def run(quick: bool) -> list[Row]:
    records, limit = (30_000, 10_000) if quick else (3_000_000, 1_000_000)
    with workdir("p7-") as work:
        source = work / "addresses.csv"
        write_geocode_input(source, records)
        home = work / "airflow"
        home.mkdir()
        settings = {"records_per_second": "inf", "queue_delay": 0, "max_running_jobs": 3}
        with Emulator(work / "emu", max_records=limit, **settings) as emu:
            env = child_env(emu.base_url, home)
            env["AIRFLOW__HERE_BATCH__BASE_LOCATION"] = f"file://{work / 'store'}"
            timeout = 1800
            base = run_child(
                "benchmarks.p7_split",
                {"mode": "baseline", "parts": _cut(source, limit, work)},
                env,
                timeout,
                log=work / "baseline.log",
            )
            emu.admin().reset()  # free the emulator's disk before the measured run
            split = run_child(
                "benchmarks.p7_split",
                {"mode": "split", "input": str(source), "limit": limit},
                env,
                timeout,
                log=work / "split.log",
            )
        with Emulator(work / "emu-single", max_records=records, **settings) as single_emu:
            single = run_child(
                "benchmarks.p7_split",
                {"mode": "single", "input": str(source), "output": str(work / "single.csv")},
                child_env(single_emu.base_url, home),
                timeout,
                log=work / "single.log",
            )
    print(f"# P7: baseline {base}, split {split}, single {single}", file=sys.stderr, flush=True)
    ratio = split["wall_s"] / base["wall_s"]
    tasks = {k: v for k, v in split["rss_mb"].items() if k != "triggerer"}
    worst = max(tasks.items(), key=lambda kv: kv[1])
    identical = split["sha256"] == single["sha256"] and split["bytes"] == single["bytes"]
    n_parts = len(split["parts"])
    return [
        Row(
            "P7",
            f"split {records:,} records into {n_parts} jobs of <= {limit:,}, to merged output (wall)",
            f"{split['wall_s']:.1f} s (plan {split['plan_s']:.1f} s)",
            f"{base['wall_s']:.1f} s ({n_parts} jobs side by side)",
            f"{ratio:.2f}x",
            f"<= {WALL_TARGET}x",
            ratio <= WALL_TARGET,
        ),
        Row(
            "P7",
            "peak RSS of every task process (plan, submit, collect, merge)",
            f"{worst[1]:.0f} MB ({worst[0]})",
            f"{base['rss_mb']:.0f} MB (baseline client); triggerer {split['rss_mb']['triggerer']:.0f} MB",
            "-",
            f"< {RSS_TARGET_MB:.0f} MB",
            all(v < RSS_TARGET_MB for v in tasks.values()),
        ),
        Row(
            "P7",
            "merged output vs one job over the whole input",
            f"{split['bytes']:,} bytes, sha256 {split['sha256'][:12]}",
            f"{single['bytes']:,} bytes, sha256 {single['sha256'][:12]}",
            "identical" if identical else "DIFFERENT",
            "byte-identical",
            identical,
        ),
    ]


__all__ = ["run"]

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    else:  # pragma: no cover
        for row in run(quick="--quick" in sys.argv):
            print(row)
