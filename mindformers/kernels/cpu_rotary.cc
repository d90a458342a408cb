// Rotary position embedding in the half-split ("rotate_half") layout over float32 rows, as an "aot" Custom op for
// MindSpore's CPU backend (mindformers/kernels/cpu_rotary.py, used by models/modules/rotary.py).
//
// Composed of MindSpore's ops a rotation is two slices, a concat, two multiplies and an add, forward and backward,
// each a pass over the query or key tensor (the slices of the last axis being the slowest). Here one pass:
//
//   out_j = x_j cos_j + x_(j + d/2 mod d) signed_sin_j        (signed_sin: sin with its first half negated)
//
// The backward is the rotation by the opposite angle, the same op with the signed sin negated.
//
// params: x (..., s, d) or (..., s, heads, d), cos and signed_sin (s, d) or (s, 1, d) (the second: x has a heads
// axis between positions and features), config (1): threads (0: OpenMP's default) | out (shape of x)
#include <omp.h>

#include <cstdint>

#include "kernel_common.h"

using mindformers_kernels::row_count;
using mindformers_kernels::thread_count;

extern "C" int RotaryForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  if (nparam != 5 || ndims[0] < 2 || ndims[1] < 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *cos = static_cast<const float *>(params[1]);
  const float *signed_sin = static_cast<const float *>(params[2]);
  const float *config = static_cast<const float *>(params[3]);
  float *out = static_cast<float *>(params[4]);
  const int64_t dim = shapes[0][ndims[0] - 1], half = dim / 2, positions = shapes[1][0];
  const int64_t heads = ndims[1] == 3 ? shapes[0][ndims[0] - 2] : 1;  // rows per position
  const int64_t rows = row_count(ndims[0], shapes[0]);
  const int threads = thread_count(config[0]);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t position = (row / heads) % positions;
    const float *xr = x + row * dim, *c = cos + position * dim, *s = signed_sin + position * dim;
    float *o = out + row * dim;
#pragma omp simd
    for (int64_t j = 0; j < half; ++j) o[j] = xr[j] * c[j] + xr[j + half] * s[j];
#pragma omp simd
    for (int64_t j = half; j < dim; ++j) o[j] = xr[j] * c[j] + xr[j - half] * s[j];
  }
  return 0;
}
