# shellcheck shell=bash
# Project-local virtualenv set-up, sourced by scripts/test.sh and scripts/demo.sh.
#
#   source scripts/_venv.sh        # then: "$VENV_PY" -m pytest ...
#
# What it does (idempotent; about 0.1 s when nothing changed):
#   1. picks a Python >= 3.10 ($PYTHON if set, else python3, else python3.13 ... python3.10);
#   2. creates "$REPO_ROOT/.venv" if missing or broken ($HERE_BATCH_VENV overrides the location);
#   3. installs the project editable with its test extra, constrained by requirements/lock.txt
#      (a universal lock made by `uv pip compile`, Airflow 3.3.2 pinned): with uv when available
#      (uv on PATH or in the venv; otherwise it bootstraps uv into the venv with pip), else plain pip
#      (HERE_BATCH_INSTALLER=pip forces pip);
#   4. writes a stamp (hash of pyproject.toml, the lock, the Python version and the repo path) so the
#      next call skips the install.
# Exports REPO_ROOT, VENV, VENV_PY and puts "$VENV/bin" first on PATH.
# Regenerate the locks after changing dependencies in pyproject.toml (lock.txt = Airflow 3.3, and one
# per older supported minor, requirements/airflow-3.N.txt; tested by scripts/test_airflow_versions.sh):
#   bash scripts/lock_airflow_versions.sh

_here_batch_venv() {
    local root venv lock stamp want have py cand t0 uv_bin
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
    venv="${HERE_BATCH_VENV:-$root/.venv}"
    lock="$root/requirements/lock.txt"
    stamp="$venv/.airflow-here-batch.stamp"

    # pip, without the "Location 'file:///...' is ignored" noise of machine-wide extra indexes.
    _hb_pip() {
        "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@" \
            2> >(grep -v "^WARNING: Location 'file:" >&2) >&2
    }
    _hb_py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; }

    if ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        py=""
        for cand in ${PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
            if command -v "$cand" >/dev/null 2>&1 && _hb_py_ok "$cand"; then py="$cand"; break; fi
        done
        if [[ -z "$py" ]]; then
            echo "venv: no Python >= 3.10 found (set PYTHON=/path/to/python3.x)" >&2
            return 1
        fi
        echo "venv: creating $venv with $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')" >&2
        "$py" -m venv --clear "$venv"
    fi
    if ! _hb_py_ok "$venv/bin/python"; then
        echo "venv: $venv has Python < 3.10; remove it or set HERE_BATCH_VENV" >&2
        return 1
    fi

    want="$(cat "$root/pyproject.toml" "$lock" | sha256sum | cut -d' ' -f1)"
    want="$want $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])') $root"
    have="$(cat "$stamp" 2>/dev/null || true)"
    # Installed and pointing at this checkout's package (find_spec does not import the package).
    if [[ "$want" == "$have" ]] && "$venv/bin/python" -c '
import importlib.util, sys
s = importlib.util.find_spec("airflow_here_batch")
sys.exit(0 if s and s.origin and s.origin.startswith(sys.argv[1]) else 1)' "$root/airflow_here_batch/" >/dev/null 2>&1; then
        :
    else
        t0=$SECONDS
        uv_bin=""
        if [[ "${HERE_BATCH_INSTALLER:-}" == "pip" ]]; then
            :
        elif [[ -x "$venv/bin/uv" ]]; then
            uv_bin="$venv/bin/uv"
        elif command -v uv >/dev/null 2>&1; then
            uv_bin="$(command -v uv)"
        elif _hb_pip install 'uv>=0.5,<1'; then
            uv_bin="$venv/bin/uv"
        fi
        if [[ -n "$uv_bin" ]]; then
            echo "venv: installing the project with $("$uv_bin" --version) into $venv ..." >&2
            # In the checkout: uv reads pyproject.toml's [tool.uv] (no mysqlclient, which needs C headers).
            (cd "$root" && "$uv_bin" pip install --quiet --python "$venv/bin/python" --compile-bytecode \
                -c "$lock" -e "$root[test]" >&2)
        else
            # pip builds mysqlclient (apache-airflow-providers-mysql requires it): it needs pkg-config and
            # the MySQL/MariaDB client headers (libmariadb-dev); uv leaves it out ([tool.uv]).
            echo "venv: installing the project with pip into $venv ..." >&2
            _hb_pip install -c "$lock" -e "$root[test]"
        fi
        printf '%s\n' "$want" >"$stamp"
        echo "venv: ready in $((SECONDS - t0)) s" >&2
    fi
    unset -f _hb_py_ok _hb_pip

    REPO_ROOT="$root"
    VENV="$venv"
    VENV_PY="$venv/bin/python"
    export REPO_ROOT VENV VENV_PY
    case ":$PATH:" in
        *":$venv/bin:"*) ;;
        *) PATH="$venv/bin:$PATH"; export PATH ;;
    esac
    export VIRTUAL_ENV="$venv"
}

_here_batch_venv
