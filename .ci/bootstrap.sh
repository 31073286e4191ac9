#!/usr/bin/env bash
# One-time set-up of a fresh machine: system simulators and the project's virtual environment.
# Called by every Makefile target through the .venv stamp; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# required: iverilog; optional: tshark (NIC tests check RoCE dissection with it when present),
# ccache (caches Verilator model compilation across designs and runs)
need_apt=()
command -v iverilog >/dev/null 2>&1 || need_apt+=(iverilog)
want_apt=()
command -v tshark >/dev/null 2>&1 || want_apt+=(tshark)
command -v ccache >/dev/null 2>&1 || want_apt+=(ccache)
if [ ${#need_apt[@]} -gt 0 ] || [ ${#want_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || echo "bootstrap: apt-get update failed" >&2
        if [ ${#need_apt[@]} -gt 0 ]; then
            echo "bootstrap: installing ${need_apt[*]} with apt-get"
            apt-get install -y -qq "${need_apt[@]}" >/dev/null
        fi
        if [ ${#want_apt[@]} -gt 0 ]; then
            echo "bootstrap: installing optional ${want_apt[*]} with apt-get"
            apt-get install -y -qq "${want_apt[@]}" >/dev/null 2>&1 \
                || echo "bootstrap: optional ${want_apt[*]} not installed (tests that need it skip)" >&2
        fi
    elif [ ${#need_apt[@]} -gt 0 ]; then
        echo "bootstrap: missing ${need_apt[*]}; install them (e.g. sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    else
        echo "bootstrap: optional ${want_apt[*]} missing (not root: skipping; tests that need it skip)" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "bootstrap: installing Python packages into $VENV (pip install -e .[dev])"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[dev]"
touch "$VENV/.installed"
echo "bootstrap: done"
