// RMSNorm forward and backward over float32 rows, as "aot" Custom ops for MindSpore's CPU backend
// (mindformers/kernels/cpu_rms_norm.py, used by models/modules/norm.py).
//
// Composed of MindSpore's ops, the forward is a Square, a ReduceMean, an Add, an Rsqrt and two Muls, and autodiff's
// backward about ten more ops, among them a ReduceSum over all rows for the scale's gradient: each a pass over the
// (rows, dim) activations. Here the forward reads x once and writes y and each row's 1/rms; the backward reads dy
// and x once and writes dx, summing the scale's gradient per thread.
//
//   r = 1 / sqrt(mean_j x_j^2 + eps);  y_j = x_j r s_j
//   dx_j = r (dy_j s_j) - x_j r^3 mean_k(dy_k s_k x_k);  ds_j = sum over rows of dy_j x_j r
//
// RmsNormForward  params: x (rows, dim), scale (dim), config (2): threads (0: OpenMP's default), eps
//                         | y (rows, dim), rstd (rows)
// RmsNormBackward params: dy (rows, dim), x (rows, dim), scale (dim), rstd (rows), config (2) | dx (rows, dim),
//                         dscale (dim)
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernel_common.h"

using mindformers_kernels::row_count;
using mindformers_kernels::thread_count;

extern "C" int RmsNormForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                              void *stream, void *extra) {
  if (nparam != 5) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *scale = static_cast<const float *>(params[1]);
  const float *config = static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[3]);
  float *rstd = static_cast<float *>(params[4]);
  const int64_t rows = row_count(ndims[0], shapes[0]), dim = shapes[0][ndims[0] - 1];
  const float eps = config[1];
#pragma omp parallel for num_threads(thread_count(config[0])) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const float *xr = x + row * dim;
    float *yr = y + row * dim;
    float squares = 0.f;
#pragma omp simd reduction(+ : squares)
    for (int64_t j = 0; j < dim; ++j) squares += xr[j] * xr[j];
    const float r = 1.f / std::sqrt(squares / static_cast<float>(dim) + eps);
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * r * scale[j];
    rstd[row] = r;
  }
  return 0;
}

extern "C" int RmsNormBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                               void *stream, void *extra) {
  if (nparam != 7) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *scale = static_cast<const float *>(params[2]);
  const float *rstd = static_cast<const float *>(params[3]);
  const float *config = static_cast<const float *>(params[4]);
  float *dx = static_cast<float *>(params[5]);
  float *dscale = static_cast<float *>(params[6]);
  const int64_t rows = row_count(ndims[0], shapes[0]), dim = shapes[0][ndims[0] - 1];
  const int threads = thread_count(config[0]);
  std::vector<float> partial(static_cast<size_t>(threads) * dim, 0.f);  // each thread's share of dscale
#pragma omp parallel num_threads(threads)
  {
    float *mine = partial.data() + static_cast<int64_t>(omp_get_thread_num()) * dim;
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const float *dyr = dy + row * dim, *xr = x + row * dim;
      float *dxr = dx + row * dim;
      const float r = rstd[row];
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < dim; ++j) dot += dyr[j] * scale[j] * xr[j];
      const float correction = r * r * r * dot / static_cast<float>(dim);
#pragma omp simd
      for (int64_t j = 0; j < dim; ++j) {
        dxr[j] = r * dyr[j] * scale[j] - correction * xr[j];
        mine[j] += dyr[j] * xr[j] * r;
      }
    }
  }
  for (int64_t j = 0; j < dim; ++j) dscale[j] = 0.f;
  for (int t = 0; t < threads; ++t) {
    const float *theirs = partial.data() + static_cast<int64_t>(t) * dim;
    for (int64_t j = 0; j < dim; ++j) dscale[j] += theirs[j];
  }
  return 0;
}
