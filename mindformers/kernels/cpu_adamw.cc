// One AdamWeightDecay step over every float32 parameter, in place, as one "aot" Custom op for MindSpore's CPU backend
// (mindformers/kernels/cpu_adamw.py, used by core/optim/adamw.py).
//
// MindSpore's AdamWeightDecay is an operator per parameter, and before it the train step multiplies every gradient
// by the unscale/clip factor, another pass over all of them. Here each thread takes its share of blocks over all
// parameters and, per element, scales the gradient, updates both moments and the weight: one read of p, m, v, g and
// one write of p, m, v, which is all the memory traffic the update needs.
//
//   g = grad * scale;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//   p = p - lr (m / (sqrt(v) + eps) + decay p)         (MindSpore's AdamWeightDecay: no bias correction)
//
// params: p..., m..., v..., grad... (n each), decay (n), lr (1), scale (1),
//         config (4): threads (0: OpenMP's default), beta1, beta2, eps | done (1)
// The parameters and moments are written where they lie: the Python side declares them written (RW_WRITE), so
// MindSpore orders every later read after this op.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernel_common.h"

using mindformers_kernels::element_count;
using mindformers_kernels::thread_count;

namespace {

constexpr int64_t kBlock = 8192;

struct Hyper {
  float lr, scale, beta1, beta2, eps;
};

void update_block(float *p, float *m, float *v, const float *grad, int64_t count, float decay, const Hyper &h) {
  const float keep1 = h.beta1, take1 = 1.f - h.beta1, keep2 = h.beta2, take2 = 1.f - h.beta2;
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    const float g = grad[i] * h.scale;
    const float m_new = keep1 * m[i] + take1 * g;
    const float v_new = keep2 * v[i] + take2 * g * g;
    m[i] = m_new;
    v[i] = v_new;
    p[i] -= h.lr * (m_new / (std::sqrt(v_new) + h.eps) + decay * p[i]);
  }
}

}  // namespace

extern "C" int AdamW(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                     void *extra) {
  if (nparam < 5 || (nparam - 5) % 4 != 0) return 1;
  const int n = (nparam - 5) / 4;
  const float *decay = static_cast<const float *>(params[4 * n]);
  const float *config = static_cast<const float *>(params[4 * n + 3]);
  const Hyper hyper{*static_cast<const float *>(params[4 * n + 1]), *static_cast<const float *>(params[4 * n + 2]),
                    config[1], config[2], config[3]};
  const int threads = thread_count(config[0]);
  // (parameter, first element) of every block: the units the threads share, so small and large parameters mix
  std::vector<std::pair<int, int64_t>> blocks;
  std::vector<int64_t> counts(n);
  for (int t = 0; t < n; ++t) {
    counts[t] = element_count(ndims[t], shapes[t]);
    for (int64_t start = 0; start < counts[t]; start += kBlock) blocks.emplace_back(t, start);
  }
  const int64_t total_blocks = static_cast<int64_t>(blocks.size());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < total_blocks; ++b) {
    const int t = blocks[b].first;
    const int64_t start = blocks[b].second;
    const int64_t count = std::min(kBlock, counts[t] - start);
    update_block(static_cast<float *>(params[t]) + start, static_cast<float *>(params[n + t]) + start,
                 static_cast<float *>(params[2 * n + t]) + start, static_cast<const float *>(params[3 * n + t]) + start,
                 count, decay[t], hyper);
  }
  *static_cast<float *>(params[nparam - 1]) = 1.f;
  return 0;
}
