#!/usr/bin/env bash
# The documentation site: mkdocs build --strict into site/ (gitignored); any warning fails the build.
#   bash scripts/build_docs.sh                 # then open site/index.html
#   bash scripts/build_docs.sh --site-dir DIR  # extra arguments go to mkdocs build
# The tooling comes from the docs extra, which the test extra includes (scripts/_venv.sh installs it).
set -euo pipefail
# shellcheck source=scripts/_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$REPO_ROOT"
t0=$SECONDS
# MkDocs plugins print banners about MkDocs 2; they are not warnings of this build.
NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true "$VENV_PY" -m mkdocs build --strict "$@"
echo "build_docs: site built in $((SECONDS - t0)) s"
