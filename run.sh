#!/usr/bin/env sh
# metalab's one entry script:  ./run.sh app | test | lab | install
# Creates .venv with Python 3.11+ on first use (torch pinned to the 2.13.0 CPU wheel first, so pip does
# not pull several GB of CUDA packages), installs metalab with its extras, then does what was asked.
set -eu
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${METALAB_VENV:-.venv}"
TORCH_PIN="${METALAB_TORCH:-torch==2.13.0}"
EXTRAS="app,notebooks,test"

install() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "run.sh: metalab needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    stamp="$VENV/.metalab-installed"
    wanted="$(cat pyproject.toml run.sh | cksum)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return 0
    fi
    echo "run.sh: setting up $VENV (first run takes a few minutes)" >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "$TORCH_PIN"
    "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
    echo "$wanted" > "$stamp"
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    install) install ;;
    app)     install; exec "$VENV/bin/metalab" app "$@" ;;
    lab)     install; exec "$VENV/bin/metalab" lab "$@" ;;
    test)    install; exec "$VENV/bin/python" -m pytest --nbval --nbval-current-env \
                 --nbval-sanitize-with notebooks/sanitize.cfg "$@" ;;
    *) echo "usage: ./run.sh app | test [pytest args] | lab | install" >&2; exit 2 ;;
esac
