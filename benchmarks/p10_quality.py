"""P10: the quality verdict's cost in the sink: 1,000,000 results classified and written with the verdict,
against the same sink writing them without it, in the same run.

One child process (Airflow imported, as in a task), a throwaway PostgreSQL database, 1,000,000 records
(quick: 50,000) in a HERE results file with the columns a geocode job asks for when the verdict is on
(``resultType``, ``houseNumberType``, ``scoringQueryScore``, ``scoringFieldScore*``, ``addressCity``,
positions), with realistic variety: mostly point addresses, some interpolated, streets and towns, scores
below 1, and 1 record in 50 with 3 candidates (``seqLength`` 3); plus the extract's fingerprints file.

* **with the verdict**: :class:`~airflow_here_batch.tables.sink.ResultSink` (the work of
  ``BatchResultsToSqlOperator``) classifies each record (:mod:`airflow_here_batch.api.quality`), writes
  ``match_quality``, ``accepted``, ``query_score``, ``candidates`` and fills the review table with the
  records not accepted (about 1 in 10 here), into a new table;
* **baseline**: the same sink with ``verdict=False`` (no classification, no quality columns, no review
  table: the sink as it was before the verdict) writing the same files into a new table.

Figure: time with / time without (<= 1.1x). Runs alternate, best of 3 each (the machine is shared).
PostgreSQL: ``HERE_BATCH_BENCH_POSTGRES_URI`` (see ``p8_incremental``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Row, child_env, run_child, workdir
from benchmarks.p8_incremental import DB_CONN_ID, OUTPUT_COLUMNS, airflow_conn, scratch_database, unreachable

TARGET = 1.1
HEADER = (
    "recId|seqNumber|seqLength|positionLat|positionLng|addressLabel|addressCountryCode|resultType|addressCity|"
    "houseNumberType|scoringQueryScore|scoringFieldScoreCity|scoringFieldScoreDistrict|"
    "scoringFieldScorePostalCode|scoringFieldScoreStreets|scoringFieldScoreHouseNumber\n"
)


def _record(i: int) -> list[str]:
    """The results lines of record ``i`` (deterministic variety, as the emulator answers)."""
    lat, lng = 47.0 + (i % 50_000) / 10_000, 6.0 + (i % 70_000) / 10_000
    head = f"{i}|1|"
    label = f"Hauptstraße {i % 997 + 1}, {10000 + i % 89999} Berlin, Germany|DEU"
    kind = i % 20
    if i % 50 == 7:  # three candidates in three towns, equally scored: ambiguous
        return [
            f"{i}|{n}|3|{lat + n:.5f}|{lng:.5f}|Helvetiaplatz, Town {n}|CHE|street|Town {n}||1.0||||1.0|\n"
            for n in (1, 2, 3)
        ]
    if kind == 0:  # the town only, scored below 1
        return [f"{head}1|{lat:.5f}|{lng:.5f}|Berlin, Germany|DEU|locality|Berlin||0.62|1.0||||\n"]
    if kind in (1, 2, 3):  # interpolated
        return [f"{head}1|{lat:.5f}|{lng:.5f}|{label}|houseNumber|Berlin|interpolated|1.0|1.0|||1.0|1.0\n"]
    if kind in (4, 5):  # a spelling variant
        return [f"{head}1|{lat:.5f}|{lng:.5f}|{label}|houseNumber|Berlin|PA|0.91|1.0|||0.87|1.0\n"]
    return [f"{head}1|{lat:.5f}|{lng:.5f}|{label}|houseNumber|Berlin|PA|1.0|1.0|||1.0|1.0\n"]


def _write_inputs(folder: Path, records: int) -> tuple[Path, Path]:
    results = folder / "results.csv"
    fingerprints = folder / "fingerprints.csv"
    with results.open("w", encoding="utf-8") as out, fingerprints.open("w", encoding="utf-8") as fp:
        out.write(HEADER)
        fp.write("rec_id|fingerprint|request_text\n")
        lines: list[str] = []
        fps: list[str] = []
        for i in range(records):
            lines.extend(_record(i))
            fps.append(f"{i}|{i:032x}|countryCode:DEU\x1fHauptstraße {i % 997 + 1}, Berlin\n")
            if len(fps) >= 10_000:
                out.write("".join(lines))
                fp.write("".join(fps))
                lines, fps = [], []
        out.write("".join(lines))
        fp.write("".join(fps))
    return results, fingerprints


def _child(payload: dict[str, Any]) -> dict[str, Any]:
    from airflow_here_batch.tables.connections import get_db_hook
    from airflow_here_batch.tables.sink import ResultSink, open_lines

    folder = Path(payload["folder"])
    records = payload["records"]
    results, fingerprints = _write_inputs(folder, records)
    timings: dict[str, list[float]] = {"with": [], "without": []}
    summary: dict[str, Any] = {}
    for attempt in range(payload["repeat"]):
        for mode in ("without", "with") if attempt % 2 == 0 else ("with", "without"):
            verdict = mode == "with"
            table = f"geo_{mode}_{attempt}"
            sink = ResultSink(
                get_db_hook(DB_CONN_ID),
                table,
                OUTPUT_COLUMNS,
                verdict=verdict,
                review_table=f"{table}_review" if verdict else None,
            )
            jobs = [("JOB-p10", open_lines(f"file://{results}"), open_lines(None))]
            t0 = time.perf_counter()
            written = sink.write(jobs, open_lines(f"file://{fingerprints}"))
            timings[mode].append(time.perf_counter() - t0)
            assert written["results"] == records, written
            if verdict:
                summary = {**sink.quality.summary(), "records_review": sink.review_rows}
    return {**{f"{k}_s": v for k, v in timings.items()}, "quality": summary}


def run(quick: bool) -> list[Row]:
    skipped = unreachable("P10")
    if skipped:
        return skipped
    records = 50_000 if quick else 1_000_000
    with workdir("p10-") as work, scratch_database("here_batch_p10") as uri:
        env = child_env(airflow_home=work / "airflow")
        env[f"AIRFLOW_CONN_{DB_CONN_ID.upper()}"] = airflow_conn(uri)
        result = run_child(
            "benchmarks.p10_quality",
            {"folder": str(work), "records": records, "repeat": 1 if quick else 3},
            env,
            timeout=3600,
            log=work / "child.log",
        )
    print(f"# P10 {json.dumps(result)}", file=sys.stderr, flush=True)
    with_s, without_s = min(result["with_s"]), min(result["without_s"])
    ratio = with_s / without_s
    verdicts = result["quality"].get("verdicts", {})
    counts = ", ".join(f"{k} {v:,}" for k, v in verdicts.items() if v)
    return [
        Row(
            "P10",
            f"sink into PostgreSQL with the quality verdict, {records:,} records ({counts}; review table "
            f"{result['quality'].get('records_review', 0):,} rows)",
            f"{records / with_s:,.0f} records/s ({with_s:.1f} s)",
            f"{records / without_s:,.0f} records/s (same sink, no verdict, {without_s:.1f} s)",
            f"{ratio:.2f}x",
            f"<= {TARGET}x",
            ratio <= TARGET,
        )
    ]


__all__ = ["run"]

if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    else:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        for row in run(quick="--quick" in sys.argv):
            print(row)
