// The sum of squares of every element of many float32 tensors, one "aot" Custom op for MindSpore's CPU backend
// (mindformers/kernels/cpu_square_sum.py): the global gradient norm's pass over the whole model's gradients.
//
// Composed of MindSpore's ops it is a Square (writing a squared copy of every gradient), a ReduceSum along the last
// axis and another over the rest, per gradient: 3 passes over memory and ~14% of the 8-layer benchmark model's
// training step. Here each thread reads its share of the elements once. Blocks of kBlock elements are summed in
// float (vectorised), the blocks in double, so the result does not depend on the tensors' sizes.
//
// params: tensors..., config (1): threads (0: OpenMP's default) | sum (1)
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernel_common.h"

using mindformers_kernels::element_count;
using mindformers_kernels::thread_count;

namespace {

constexpr int64_t kBlock = 4096;

float block_square_sum(const float *x, int64_t count) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < count; ++i) sum += x[i] * x[i];
  return sum;
}

}  // namespace

extern "C" int SquareSum(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                         void *extra) {
  const int tensors = nparam - 2;
  if (tensors < 0) return 1;
  const float *config = static_cast<const float *>(params[tensors]);
  const int threads = thread_count(config[0]);
  // (tensor, first element) of every block: the blocks are the units the threads share
  std::vector<std::pair<int, int64_t>> blocks;
  for (int t = 0; t < tensors; ++t) {
    const int64_t count = element_count(ndims[t], shapes[t]);
    for (int64_t start = 0; start < count; start += kBlock) blocks.emplace_back(t, start);
  }
  const int64_t total_blocks = static_cast<int64_t>(blocks.size());
  double sum = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : sum)
  for (int64_t b = 0; b < total_blocks; ++b) {
    const int t = blocks[b].first;
    const int64_t start = blocks[b].second;
    const int64_t count = std::min(kBlock, element_count(ndims[t], shapes[t]) - start);
    sum += block_square_sum(static_cast<const float *>(params[t]) + start, count);
  }
  *static_cast<float *>(params[tensors + 1]) = static_cast<float>(sum);
  return 0;
}
