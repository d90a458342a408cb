"""The batch order of every task: longest prompts first (least padding per batch, and an out-of-memory shows at
once), the short last batch filled up with copies so its shape matches the others (graph mode then reuses the
graphs compiled for full batches)."""


def batches_longest_first(prompt_ids, batch_size):
    """Yield (indices of the batch's prompts, rows of exactly batch_size prompts)."""
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        rows = [prompt_ids[i] for i in indices]
        yield indices, rows + [rows[-1]] * (batch_size - len(rows))
