"""run_mode predict: prompts from --predict_data, continued by model.generate in batches of --predict_batch_size,
printed and written to <output_dir>/predict_results.jsonl."""
import json
import logging
import os
import time

from mindformers.checkpoint.atomic import atomic_files
from mindformers.core.context.compile_cache import predict_compile_cache
from mindformers.generation.timing import reset_generation_times, run_started, seconds_since_process_start, timing_line
from mindformers.tools.errors import ConfigError
from mindformers.trainer.inference_model import build_inference_model, writes_outputs

logger = logging.getLogger("mindformers")
RESULTS_NAME = "predict_results.jsonl"
TEXT_FILE_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".tsv", ".md")


def read_prompts(predict_data):
    """A prompt, a list of prompts, or (one item naming a file) the non-empty lines of that file."""
    if predict_data is None or predict_data == [] or predict_data == "":
        raise ConfigError("predict_data: expected a prompt, several prompts, or a file with one prompt per line "
                          "(--predict_data)")
    items = [predict_data] if isinstance(predict_data, str) else [str(item) for item in predict_data]
    if len(items) == 1 and os.path.isfile(items[0]):
        try:
            with open(items[0], encoding="utf-8") as stream:
                prompts = [line.rstrip("\n") for line in stream if line.strip()]
        except UnicodeDecodeError:
            raise ConfigError(f"predict_data: {items[0]} is not a UTF-8 text file (expected one prompt per "
                              "line)") from None
        if not prompts:
            raise ConfigError(f"predict_data: {items[0]} holds no prompt (expected one per line)")
        return prompts
    if len(items) == 1 and looks_like_a_path(items[0]):
        raise ConfigError(f"predict_data: file not found: {items[0]} (a prompt that looks like a path is taken for "
                          "one; to generate from that very text, pass it with another prompt or add a space)")
    return items


def looks_like_a_path(text):
    """One word naming a text file (prompts.txt, data/q.jsonl) or starting like a path (/, ./, ~/)."""
    if any(char.isspace() for char in text):
        return False
    return text.startswith(("/", "./", "../", "~/")) or text.lower().endswith(TEXT_FILE_SUFFIXES)


def continuation(tokenizer, prompt_ids, output_ids):
    """The generated text: decoded with the prompt (so a leading space survives), the prompt's text cut off."""
    prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    full_text = tokenizer.decode(output_ids, skip_special_tokens=True)
    if full_text.startswith(prompt_text):
        return full_text[len(prompt_text):]
    return tokenizer.decode(output_ids[len(prompt_ids):], skip_special_tokens=True)


def predict(config):
    """run_mode predict: the YAML's model and tokenizer, --load_checkpoint weights, --predict_data prompts."""
    began = run_started(time.perf_counter())
    prompts = read_prompts(config.get("predict_data"))
    batch_size = 1 if config.get("predict_batch_size") is None else config.get("predict_batch_size")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"predict_batch_size: expected a positive integer, got {batch_size!r}")
    _, network, tokenizer = build_inference_model(config, "predict")
    load = time.perf_counter() - began
    times = reset_generation_times(network)
    writes = writes_outputs()  # rank 0 of a parallel run
    output_dir = os.path.abspath(config.get("output_dir") or "./output")
    encoded = [tokenizer.encode(prompt) for prompt in prompts]
    # A short last batch is filled up with copies, so graph mode reuses the graphs compiled for full batches.
    batches = [encoded[start:start + batch_size] for start in range(0, len(encoded), batch_size)]
    batches = [batch + [batch[-1]] * (batch_size - len(batch)) for batch in batches]
    predict_compile_cache(config, [[len(ids) for ids in batch] for batch in batches], config.get("max_new_tokens"))
    records = []
    for number, batch_ids in enumerate(batches):
        batch = prompts[number * batch_size:(number + 1) * batch_size]
        ids = batch_ids[:len(batch)]
        outputs = network.generate(batch_ids, tokenizer=tokenizer, max_new_tokens=config.get("max_new_tokens"))
        for prompt, prompt_ids, output_ids in zip(batch, ids, outputs):
            text = continuation(tokenizer, prompt_ids, output_ids)
            if writes:
                print(f"{prompt}{text}", flush=True)
            records.append({"prompt": prompt, "output": text, "input_ids": prompt_ids,
                            "output_ids": output_ids[len(prompt_ids):]})
    if not writes:
        return records
    path = os.path.join(output_dir, RESULTS_NAME)
    os.makedirs(output_dir, exist_ok=True)
    with atomic_files(path) as (tmp_path,):
        with open(tmp_path, "w", encoding="utf-8") as stream:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    logger.info("wrote %d predictions to %s", len(records), path)
    logger.info(timing_line(load, times, seconds_since_process_start()))
    return records
