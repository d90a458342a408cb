"""Generation tasks: greedy continuations of prompts in batches, through the model's public generate()."""
from mindformers.evaluation.batching import batches_longest_first
from mindformers.trainer.predict import continuation


def cut_at_stop(text, stop_strings):
    """The text before the first stop string (generate stops after one appears; its tail is not the answer)."""
    ends = [text.index(stop) for stop in stop_strings if stop in text]
    return text[:min(ends)] if ends else text


def generate_continuations(model, tokenizer, prompt_ids, batch_size, max_new_tokens, stop_strings, progress):
    """The generated text after each prompt (greedy, one beam, no repetition penalty), cut at the first stop
    string."""
    texts = [None] * len(prompt_ids)
    for indices, rows in batches_longest_first(prompt_ids, batch_size):
        outputs = model.generate(rows, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 repetition_penalty=1.0, stop_strings=list(stop_strings) or None,
                                 tokenizer=tokenizer)
        for index, output in zip(indices, outputs):
            texts[index] = cut_at_stop(continuation(tokenizer, prompt_ids[index], output), stop_strings)
        progress.update(len(indices))
    return texts
