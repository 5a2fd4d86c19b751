# Sourced by scripts/demo and scripts/test: make sure .venv exists and has the project
# (with its dev and embedded extras) installed at the current pyproject.toml. Needs only Python 3.11.
set -euo pipefail

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local stamp=.venv/.installed want
  if [ ! -x .venv/bin/python ]; then
    local py; py=$(find_python)
    echo "creating .venv with $($py --version)" >&2
    "$py" -m venv .venv
  fi
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing the project and its dev tools into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,embedded]' >&2
    echo "$want" > "$stamp"
  fi
}
