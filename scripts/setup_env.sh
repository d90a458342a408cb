# Sourced by .ci/run and scripts/demo.sh: create (once) and activate the virtual environment, install the
# project with its test extras. The venv is reused between runs because the mindspore wheel is ~2.5 GB.
# MINDFORMERS_VENV chooses another location; an already active venv that imports mindspore is used as is.
if [ -n "${VIRTUAL_ENV:-}" ] && python -c "import mindspore" >/dev/null 2>&1; then
  VENV="$VIRTUAL_ENV"
else
  VENV="${MINDFORMERS_VENV:-$HOME/.cache/mindformers-llama/venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test]"
export GLOG_v=3  # MindSpore's C++ log level: warnings and errors only
