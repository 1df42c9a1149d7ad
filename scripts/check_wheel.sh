#!/usr/bin/env bash
# The package as a pip user meets it: build the wheel, install it into a fresh venv (nothing from the
# checkout on sys.path), then check what a user sees:
#   - `airflow providers get airflow-here-batch --full -o json` shows the Documentation URL from the
#     project-urls as `documentation-url` (Airflow 3.3.2 prints only name and version without --full);
#   - `python -c "import airflow_here_batch.example_dags"` works and the DAG files and sample data
#     are inside the installed package;
#   - LICENSE is in the wheel; the README in its metadata has no relative link (they break on the
#     package index); the version is the package's; no pytest11 entry point is registered.
# Prints the time each step took. Run by .ci/run; by hand: bash scripts/check_wheel.sh
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"

UV="$VENV/bin/uv"
[[ -x "$UV" ]] || UV="$(command -v uv)"
work="$(mktemp -d "${TMPDIR:-/tmp}/here-batch-wheel-XXXXXX")"
trap 'rm -rf "$work"' EXIT
t0=$SECONDS

"$UV" build --wheel --quiet --out-dir "$work/dist" .
wheel="$(ls "$work"/dist/airflow_here_batch-*.whl)"
echo "check_wheel: built $(basename "$wheel") in $((SECONDS - t0)) s"
"$VENV_PY" - "$wheel" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
for wanted in ("licenses/LICENSE", "airflow_here_batch/example_dags/data/addresses_default.csv"):
    assert any(n.endswith(wanted) for n in names), f"check_wheel: {wanted} is missing from the wheel"
print("check_wheel: LICENSE and the example DAGs' data are in the wheel")
import re

meta = zipfile.ZipFile(sys.argv[1]).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
relative = [t for t in re.findall(r"\]\(([^)\s]+)\)", meta) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
assert not relative, f"check_wheel: the package index README has relative links: {relative}"
print("check_wheel: the README on the package index has no relative links")
EOF

t1=$SECONDS
"$UV" venv --quiet --python "$VENV_PY" "$work/venv"
"$UV" pip install --quiet --python "$work/venv/bin/python" --compile-bytecode -c requirements/lock.txt "$wheel"
echo "check_wheel: fresh venv with the wheel in $((SECONDS - t1)) s"

t2=$SECONDS
export AIRFLOW_HOME="$work/airflow" PYTHONWARNINGS=ignore AIRFLOW__CORE__LOAD_EXAMPLES=False
unset AIRFLOW__CORE__DAGS_FOLDER
cd "$work"   # not the checkout: the import must come from the installed wheel
"$work/venv/bin/airflow" providers get airflow-here-batch --full -o json >"$work/provider.json"
"$work/venv/bin/python" - "$work/provider.json" "$REPO_ROOT" <<'EOF'
import json
import sys
from pathlib import Path

raw = Path(sys.argv[1]).read_text()
info = json.loads(raw[raw.index("[") :])[0]  # anything printed before the JSON is ignored
url = "https://airflow-here-batch.github.io/airflow-here-batch/"
assert info.get("documentation-url") == url, f"documentation-url is not {url}: {json.dumps(info)[:2000]}"
print(f"check_wheel: airflow providers get --full shows documentation-url {url}")

import importlib.metadata as md

import airflow_here_batch
import airflow_here_batch.example_dags as examples

assert not Path(airflow_here_batch.__file__).is_relative_to(Path(sys.argv[2])), airflow_here_batch.__file__
assert md.version("airflow-here-batch") == airflow_here_batch.__version__
dags = sorted(p.name for p in examples.EXAMPLE_DAGS_FOLDER.glob("here_batch_*.py"))
assert len(dags) >= 5 and (examples.EXAMPLE_DAGS_FOLDER / "data" / "addresses_default.csv").is_file(), dags
assert not [e for e in md.entry_points(group="pytest11") if e.value.startswith("airflow_here_batch")]
urls = dict(u.split(", ", 1) for u in md.metadata("airflow-here-batch").get_all("Project-URL"))
assert set(urls) >= {"Documentation", "Source", "Changelog", "Issues"}, urls
print(f"check_wheel: import airflow_here_batch.example_dags works ({len(dags)} DAG files, from site-packages)")
EOF
echo "check_wheel: checks in $((SECONDS - t2)) s; all in $((SECONDS - t0)) s"
