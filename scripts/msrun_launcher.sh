#!/usr/bin/env bash
# Launch a MindFormers command on several workers through MindSpore's msrun.
#
#   bash scripts/msrun_launcher.sh "COMMAND" [WORKER_NUM] [LOCAL_WORKER] [MASTER_ADDR] [MASTER_PORT] [NODE_RANK]
#                                  [LOG_DIR] [JOIN] [CLUSTER_TIME_OUT]
#
# COMMAND is the script and its arguments as one string, e.g. "run_mindformer.py --config ... --use_parallel True".
# With only WORKER_NUM given, every worker runs on this node (the single-node short form). Workers write their logs
# to LOG_DIR/worker_<rank>.log (msrun's layout). The exit code is non-zero when any worker fails.
# msrun starts workers with the `python` found on PATH: run this from the activated environment.
set -uo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
}

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "error: msrun_launcher.sh: missing COMMAND" >&2
  usage
  exit 2
fi

COMMAND="$1"
WORKER_NUM="${2:-8}"
LOCAL_WORKER="${3:-$WORKER_NUM}"
MASTER_ADDR="${4:-127.0.0.1}"
MASTER_PORT="${5:-8118}"
NODE_RANK="${6:-0}"
LOG_DIR="${7:-output/msrun_log}"
JOIN="${8:-True}"
CLUSTER_TIME_OUT="${9:-7200}"

is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }
for pair in "WORKER_NUM:$WORKER_NUM" "LOCAL_WORKER:$LOCAL_WORKER" "MASTER_PORT:$MASTER_PORT" \
            "NODE_RANK:$NODE_RANK" "CLUSTER_TIME_OUT:$CLUSTER_TIME_OUT"; do
  if ! is_int "${pair#*:}"; then
    echo "error: msrun_launcher.sh: ${pair%%:*} must be a non-negative integer, got '${pair#*:}'" >&2
    exit 2
  fi
done
if [ "$WORKER_NUM" -lt 1 ] || [ "$LOCAL_WORKER" -lt 1 ] || [ "$LOCAL_WORKER" -gt "$WORKER_NUM" ]; then
  echo "error: msrun_launcher.sh: expected 1 <= LOCAL_WORKER ($LOCAL_WORKER) <= WORKER_NUM ($WORKER_NUM)" >&2
  exit 2
fi
if [ "$JOIN" != "True" ] && [ "$JOIN" != "False" ]; then
  echo "error: msrun_launcher.sh: JOIN must be True or False, got '$JOIN'" >&2
  exit 2
fi
if ! command -v msrun >/dev/null 2>&1; then
  echo "error: msrun_launcher.sh: msrun not found on PATH; activate the environment where mindspore is installed" >&2
  exit 2
fi

# The command names a script relative to the repository (run_mindformer.py ...) or an absolute path.
cd "$(dirname "$0")/.." || exit 2
read -r -a ARGS <<< "$COMMAND"
SCRIPT="${ARGS[0]}"
if [ ! -f "$SCRIPT" ]; then
  echo "error: msrun_launcher.sh: script not found: $SCRIPT" >&2
  exit 2
fi
mkdir -p "$LOG_DIR"

echo "msrun: $WORKER_NUM workers ($LOCAL_WORKER on this node, rank $NODE_RANK), master $MASTER_ADDR:$MASTER_PORT," \
     "logs in $LOG_DIR"
# Several "nodes" on one host (rehearsing a multi-node launch against 127.0.0.1): msrun starts the scheduler on
# every node whose MASTER_ADDR is a local address, so node 1's copy would collide with node 0's on the same port
# and fail its launch. Only node 0 owns the scheduler there; other nodes run msrun told that the master is remote.
MSRUN=(msrun)
case "$MASTER_ADDR" in
  127.*|localhost)
    if [ "$NODE_RANK" -gt 0 ]; then
      MSRUN=(python -c "import sys; import mindspore.parallel.cluster.process_entity._api as api; \
api._is_local_ip = lambda address: False; from mindspore.parallel.cluster.run import main; sys.argv[0] = 'msrun'; \
sys.exit(main())")
    fi;;
esac
"${MSRUN[@]}" --worker_num="$WORKER_NUM" --local_worker_num="$LOCAL_WORKER" --master_addr="$MASTER_ADDR" \
      --master_port="$MASTER_PORT" --node_rank="$NODE_RANK" --log_dir="$LOG_DIR" --join="$JOIN" \
      --cluster_time_out="$CLUSTER_TIME_OUT" "${ARGS[@]}"
STATUS=$?
if [ $STATUS -ne 0 ]; then
  echo "error: msrun_launcher.sh: a worker failed (exit $STATUS); see $LOG_DIR/worker_*.log" >&2
fi
exit $STATUS
