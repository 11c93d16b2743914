#!/usr/bin/env bash
# Set up medimg in ./.venv (once) and run the demo or the test suite.
#
#   bash scripts/dev.sh demo [ARGS...]   # the main job: medimg demo on synthetic data
#   bash scripts/dev.sh test [ARGS...]   # lint, format check, type check, pytest
#
# The environment is (re)installed only when pyproject.toml changed since the last install.
# torch==2.13.0 is installed first: on machines with a local CPU wheel that pins the CPU build;
# elsewhere pip picks the matching build (CUDA on GPU machines). Set MEDIMG_VENV to use
# another folder, PYTHON to choose the interpreter.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${MEDIMG_VENV:-$root/.venv}
torch_pin="torch==2.13.0"

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in python3.11 python3.12 python3.13 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  echo "error: no python3 found; install Python >= 3.10" >&2
  exit 2
}

setup_venv() {
  local stamp="$venv/.medimg-installed"
  local want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $torch_pin"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  local py
  py=$(pick_python)
  echo "setting up $venv with $($py --version 2>&1) (once; later runs skip this)" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$torch_pin"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
  "$venv/bin/python" -c "import medimg, monai, nibabel, pydicom, SimpleITK, pydantic"
  echo "$want" >"$stamp"
}

# medimg serve's page: NiiVue and Swagger UI from the npm registry, pinned by the committed
# package-lock.json (npm ci, scripts off; again only when the lock file changed), and Debian's
# chromium for the browser tests (never `playwright install`, which downloads a browser).
setup_serve_web() {
  local web="$root/medimg/serve/web"
  local stamp="$web/node_modules/.medimg-installed"
  local want
  want=$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)
  local missing=()
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get (once)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    (cd "$web" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

setup() {
  setup_venv
  setup_serve_web
}

run_tests() {
  local bin="$venv/bin"
  echo "== ruff check" && "$bin/ruff" check .
  echo "== ruff format --check" && "$bin/ruff" format --check .
  echo "== mypy" && "$bin/mypy"
  echo "== pytest"
  # pytest exits 5 when it collected no test: that fails this script too.
  "$bin/python" -m pytest "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) setup; exec "$venv/bin/medimg" demo "$@" ;;
  test) setup; run_tests "$@" ;;
  setup) setup ;;
  *) echo "usage: bash scripts/dev.sh {demo|test|setup} [ARGS...]" >&2; exit 2 ;;
esac
