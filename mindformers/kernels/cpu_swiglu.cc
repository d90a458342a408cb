// The gated MLP's SiLU(gate) * up over float32 tensors, forward and backward, as "aot" Custom ops for MindSpore's CPU
// backend (mindformers/kernels/cpu_swiglu.py, used by models/modules/mlp.py).
//
// Composed of MindSpore's ops the forward is a Sigmoid and two multiplies and autodiff's backward five more ops,
// each a pass over (tokens, intermediate) tensors, the widest activations of a layer. Here the forward reads gate
// and up once and writes the product; the backward reads the output's gradient, gate and up once (the sigmoid
// recomputed) and writes both gradients.
//
//   out = g s(g) u;  d_g = d_out u s(g) (1 + g (1 - s(g)));  d_u = d_out g s(g)       (s: the logistic sigmoid)
//
// SwigluForward  params: gate, up (same shape), config (1): threads (0: OpenMP's default) | out
// SwigluBackward params: d_out, gate, up, config | d_gate, d_up
#include <omp.h>

#include <cmath>
#include <cstdint>

#include "kernel_common.h"

using mindformers_kernels::element_count;
using mindformers_kernels::thread_count;

namespace {

// clamped so exp stays finite, as -ffast-math assumes (build.py); beyond +-80 the sigmoid is 0 or 1 in float anyway
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-std::fmin(std::fmax(x, -80.f), 80.f))); }

}  // namespace

extern "C" int SwigluForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  if (nparam != 4) return 1;
  const float *gate = static_cast<const float *>(params[0]);
  const float *up = static_cast<const float *>(params[1]);
  const float *config = static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[3]);
  const int64_t count = element_count(ndims[0], shapes[0]);
#pragma omp parallel for simd num_threads(thread_count(config[0])) schedule(static)
  for (int64_t i = 0; i < count; ++i) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
  return 0;
}

extern "C" int SwigluBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                              void *stream, void *extra) {
  if (nparam != 6) return 1;
  const float *d_out = static_cast<const float *>(params[0]);
  const float *gate = static_cast<const float *>(params[1]);
  const float *up = static_cast<const float *>(params[2]);
  const float *config = static_cast<const float *>(params[3]);
  float *d_gate = static_cast<float *>(params[4]);
  float *d_up = static_cast<float *>(params[5]);
  const int64_t count = element_count(ndims[0], shapes[0]);
#pragma omp parallel for simd num_threads(thread_count(config[0])) schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i], s = sigmoid(g);
    d_gate[i] = d_out[i] * up[i] * s * (1.f + g * (1.f - s));
    d_up[i] = d_out[i] * g * s;
  }
  return 0;
}
