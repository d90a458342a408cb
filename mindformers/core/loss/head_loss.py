"""The LM head and the weighted NLL in one cell that never holds the whole (tokens, vocab) logits.

At seq 8192 and a 32000 vocabulary the logits are 1 GiB in float32, and the composed head + WeightedNll keeps the
logits for the backward and makes the softmax, the scatter and the weighted product of the same size there (a
one-layer model's step at seq 8192 peaked at 12.1 GiB RSS with it, 5.5 GiB with this cell). Here the rows go in
chunks; each chunk's logits give its share of the loss and, in the same pass, its gradients (softmax -
onehot(label)) scaled by the row weights, multiplied straight into d_hidden and d_weight. The backward then only
scales those by the incoming gradient: the same matrix products as the composed head and loss (no recomputation),
and what stays alive is d_hidden (tokens, hidden) and d_weight (vocab, hidden).

The row weights scale the (rows, hidden) factors, never the (rows, vocab) gradient: in MindSpore 2.10 CPU graphs an
elementwise op that broadcasts an operand implicitly keeps it alive to the end of the graph
(blockwise_attention.broadcast_like), so a (rows, 1) x (rows, vocab) product would keep every chunk's logits.
"""
import mindspore as ms
from mindspore import nn, ops

from mindformers.kernels import cpu_linear

# Rows per chunk: (rows, vocab) float32 temporaries of 128 MiB at a 32000 vocabulary. More rows go in chunks of
# rows / MAX_CHUNKS so that the unrolled loop (graph mode) stays short.
CHUNK_ROWS = 1024
MAX_CHUNKS = 8


def worth_chunking(rows):
    """Whether the rows fill more than one chunk: in one chunk the composed head + loss holds the same logits, and
    it measured a few percent faster per step at seq 256 (8 layers, hidden 512, vocab 32000, batch 2)."""
    return rows > CHUNK_ROWS


@ops.constexpr
def chunk_plan(rows, chunk_rows, max_chunks):
    """((first row, end row), ...) covering `rows`."""
    size = max(chunk_rows, -(-rows // max_chunks))
    return tuple((start, min(start + size, rows)) for start in range(0, rows, size))


class HeadWeightedNll(nn.Cell):
    """sum_i weights_i * -log_softmax(hidden_i W^T)[labels_i] for hidden (n, h), W (vocab, h) of one dtype (the
    product's), labels (n,) int32, weights (n,) float32; the softmax in float32.

    construct returns (loss, d_hidden, d_weight): the gradients of the loss, computed in the forward pass chunk by
    chunk; bprop scales them by the incoming gradient of the loss."""

    def __init__(self):
        super().__init__()
        self.logits_matmul = ops.MatMul(transpose_b=True)
        self.hidden_matmul = ops.MatMul()
        self.weight_matmul = ops.MatMul(transpose_a=True)
        # in float32 on CPU the products go through oneDNN's sgemm, as dense layers' do (kernels/cpu_linear.py)
        self.cpu_products = cpu_linear.CpuLinearProduct() if cpu_linear.available(ms.float32) else None

    def on_cpu_kernel(self, weight):
        return self.cpu_products is not None and weight.dtype == ms.float32

    def chunk_logits(self, rows, weight):
        if self.on_cpu_kernel(weight):
            return self.cpu_products(rows, weight)
        return self.logits_matmul(rows, weight)

    def chunk_d_hidden(self, d_logits, weight):
        if self.on_cpu_kernel(weight):
            return self.cpu_products.input_grad(d_logits, weight)
        return self.hidden_matmul(d_logits, weight)

    def chunk_d_weight(self, d_logits, rows):
        if self.on_cpu_kernel(rows):
            return self.cpu_products.weight_grad(d_logits, rows)
        return self.weight_matmul(d_logits, rows)

    def construct(self, hidden, weight, labels, weights):
        loss = ops.zeros((), ms.float32)
        d_weight = ops.zeros(weight.shape, ms.float32)
        d_hidden = []
        done = weight
        for start, end in chunk_plan(hidden.shape[0], CHUNK_ROWS, MAX_CHUNKS):
            rows = ops.depend(hidden[start:end], done)
            index = ops.expand_dims(labels[start:end], -1)
            row_weights = ops.expand_dims(weights[start:end], -1)
            log_probs = ops.log_softmax(ops.cast(self.chunk_logits(rows, weight), ms.float32), -1)
            loss = loss - ops.sum(ops.gather_elements(log_probs, 1, index) * row_weights)
            probs = ops.exp(log_probs)
            d_logits = ops.tensor_scatter_elements(probs, index, ops.gather_elements(probs, 1, index) - 1.0, axis=1)
            d_logits = ops.cast(d_logits, weight.dtype)
            d_hidden_chunk = ops.cast(self.chunk_d_hidden(d_logits, weight), ms.float32) * row_weights
            d_hidden.append(d_hidden_chunk)
            d_weight = d_weight + ops.cast(self.chunk_d_weight(d_logits, rows * ops.cast(row_weights, rows.dtype)),
                                           ms.float32)
            # the next chunk waits for this one's d_hidden and loss too: else the graph puts them at their first use
            # (the backward, the end), keeping every chunk's (rows, vocab) gradient or log-probabilities until then
            done = ops.depend(d_weight, (d_hidden_chunk, loss))
        return loss, ops.concat(d_hidden, 0), d_weight

    def bprop(self, hidden, weight, labels, weights, out, dout):
        _, d_hidden, d_weight = out
        scale = dout[0]
        return (ops.cast(d_hidden * scale, hidden.dtype), ops.cast(d_weight * scale, weight.dtype),
                ops.zeros_like(labels), ops.zeros_like(weights))
