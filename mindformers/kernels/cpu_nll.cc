// The weighted negative log-likelihood of float32 logits, forward and backward, as "aot" Custom ops for MindSpore's
// CPU backend (mindformers/kernels/cpu_nll.py, used by core/loss/cross_entropy.py).
//
// Composed of MindSpore's ops, the loss of (tokens, vocab) logits is a LogSoftmax, a gather and a multiply, and its
// backward a Softmax, a scatter and a multiply: passes over a tensor as big as the logits, each writing one. Here
// the forward reads each row twice (its maximum, then the sum of exponentials, the row still in cache) and writes
// one value per row; the backward reads the logits once and writes their gradient.
//
//   lse_i = log sum_j exp(l_ij);  loss = sum_i w_i (lse_i - l_i,label_i)
//   dl_ij = (exp(l_ij - lse_i) - [j == label_i]) w_i dout
//
// NllForward  params: logits (n, vocab), labels (n) int32, weights (n), config (1): threads (0: OpenMP's default)
//                     | loss (1), lse (n)
// NllBackward params: logits, labels, weights, lse (n), dout (1 or a scalar), config | d_logits (n, vocab)
// A label outside [0, vocab) fails the op (returns 2) rather than reading or writing outside the row.
#include <omp.h>

#include <cmath>
#include <cstdint>

#include "kernel_common.h"

using mindformers_kernels::thread_count;

namespace {

bool labels_in_range(const int32_t *labels, int64_t rows, int64_t vocab) {
  for (int64_t i = 0; i < rows; ++i) {
    if (labels[i] < 0 || labels[i] >= vocab) return false;
  }
  return true;
}

float row_log_sum_exp(const float *row, int64_t vocab) {
  float top = row[0];
#pragma omp simd reduction(max : top)
  for (int64_t j = 0; j < vocab; ++j) top = std::fmax(top, row[j]);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - top);
  return top + std::log(sum);
}

}  // namespace

extern "C" int NllForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                          void *extra) {
  if (nparam != 6 || ndims[0] != 2) return 1;
  const float *logits = static_cast<const float *>(params[0]);
  const int32_t *labels = static_cast<const int32_t *>(params[1]);
  const float *weights = static_cast<const float *>(params[2]);
  const float *config = static_cast<const float *>(params[3]);
  float *loss = static_cast<float *>(params[4]);
  float *lse = static_cast<float *>(params[5]);
  const int64_t rows = shapes[0][0], vocab = shapes[0][1];
  if (!labels_in_range(labels, rows, vocab)) return 2;
  double total = 0.0;
#pragma omp parallel for num_threads(thread_count(config[0])) schedule(static) reduction(+ : total)
  for (int64_t i = 0; i < rows; ++i) {
    const float *row = logits + i * vocab;
    lse[i] = row_log_sum_exp(row, vocab);
    total += static_cast<double>(weights[i]) * (lse[i] - row[labels[i]]);
  }
  *loss = static_cast<float>(total);
  return 0;
}

extern "C" int NllBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                           void *stream, void *extra) {
  if (nparam != 7 || ndims[0] != 2) return 1;
  const float *logits = static_cast<const float *>(params[0]);
  const int32_t *labels = static_cast<const int32_t *>(params[1]);
  const float *weights = static_cast<const float *>(params[2]);
  const float *lse = static_cast<const float *>(params[3]);
  const float dout = *static_cast<const float *>(params[4]);
  const float *config = static_cast<const float *>(params[5]);
  float *d_logits = static_cast<float *>(params[6]);
  const int64_t rows = shapes[0][0], vocab = shapes[0][1];
  if (!labels_in_range(labels, rows, vocab)) return 2;
#pragma omp parallel for num_threads(thread_count(config[0])) schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    const float *row = logits + i * vocab;
    float *d_row = d_logits + i * vocab;
    const float scale = weights[i] * dout, shift = lse[i];
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) d_row[j] = std::exp(row[j] - shift) * scale;
    d_row[labels[i]] -= scale;
  }
  return 0;
}
