#!/usr/bin/env bash
# The main job on the embedded sample, end to end on a CPU:
#   shipped real text -> a sentencepiece tokenizer trained from it -> MindRecord -> pretrain the tiny Llama 2
#   -> a report with its curves (<OUTPUT_DIR>/report/index.html).
# Usage: bash scripts/demo.sh [OUTPUT_DIR]   (default output/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/setup_env.sh
OUT="${1:-output/demo}"
SAMPLE=datasets/sample/python_docs.txt
mkdir -p "$OUT"

echo "== 1/3 train a sentencepiece tokenizer on $SAMPLE"
python -m mindformers.tools.tokenizer_training --kind sentencepiece --input "$SAMPLE" \
  --output "$OUT/tokenizer.model" --vocab_size 1024

echo "== 2/3 pack the text into MindRecord rows of 129 tokens"
python mindformers/tools/dataset_preprocess/llama/llama_preprocess.py --dataset_type wiki \
  --input_glob "$SAMPLE" --model_file "$OUT/tokenizer.model" --seq_length 128 \
  --output_file "$OUT/wiki128.mindrecord"

echo "== 3/3 pretrain configs/llama2/pretrain_llama2_tiny.yaml"
python run_mindformer.py --config configs/llama2/pretrain_llama2_tiny.yaml --run_mode train \
  --train_dataset_dir "$OUT/wiki128.mindrecord" --vocab_file "$OUT/tokenizer.model" --output_dir "$OUT"

python - "$OUT/log/train_metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
first, last = rows[0], rows[-1]
print(f"loss fell from {first['loss']:.3f} (step {first['step']}) to {last['loss']:.3f} (step {last['step']})")
PY

echo "== report: plots of the run"
python -m mindformers.tools.report "$OUT"
