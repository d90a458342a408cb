// What the CPU kernels' .cc files share: the thread count their config gives, and element counts of a shape.
// build.py hashes this header with each source, so changing it rebuilds every kernel.
#pragma once

#include <omp.h>

#include <cstdint>

namespace mindformers_kernels {

// A config's thread setting: MindSpore's runtime_num_threads (build.kernel_threads), or 0 for OpenMP's default.
inline int thread_count(float setting) { return setting > 0 ? static_cast<int>(setting) : omp_get_max_threads(); }

inline int64_t element_count(int ndim, const int64_t *shape) {
  int64_t count = 1;
  for (int axis = 0; axis < ndim; ++axis) count *= shape[axis];
  return count;
}

// The rows of a tensor read as (rows, last axis).
inline int64_t row_count(int ndim, const int64_t *shape) { return ndim > 0 ? element_count(ndim - 1, shape) : 1; }

}  // namespace mindformers_kernels
