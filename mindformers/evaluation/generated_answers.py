"""Generation tasks: greedy continuations of prompts in batches, through the model's public generate()."""
from mindformers.evaluation.batching import batches_longest_first
from mindformers.trainer.predict import continuation


def cut_at_stop(text, stop_strings):
    """The text before the first stop string (lm-eval splits at each in turn, which keeps the same prefix)."""
    ends = [text.index(stop) for stop in stop_strings if stop in text]
    return text[:min(ends)] if ends else text


def generate_continuations(model, tokenizer, prompt_ids, batch_size, max_new_tokens, stop_strings, progress,
                           decode_alone=True):
    """The generated text after each prompt (greedy, one beam, no repetition penalty), cut at the first stop
    string. decode_alone: the new tokens are decoded by themselves, as lm-eval does; else with the prompt.

    Always with the KV cache, whatever the model config's use_past (training YAMLs leave it off): the tokens are the
    same, but without it every new token reruns the whole grid, and graph mode keeps a graph of the whole grid per
    length."""
    texts = [None] * len(prompt_ids)
    for indices, rows in batches_longest_first(prompt_ids, batch_size):
        outputs = model.generate(rows, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 repetition_penalty=1.0, use_past=True, stop_strings=list(stop_strings) or None,
                                 tokenizer=tokenizer)
        for index, output in zip(indices, outputs):
            prompt = prompt_ids[index]
            if decode_alone:
                text = tokenizer.decode(output[len(prompt):], skip_special_tokens=True)
            else:
                text = continuation(tokenizer, prompt, output)
            texts[index] = cut_at_stop(text, stop_strings)
        progress.update(len(indices))
    return texts
