// A dense layer's products for MindSpore's CPU backend ("aot" Custom ops, mindformers/kernels/cpu_linear.py):
// y = x W^T and its gradients dx = dy W, dW = dy^T x, for x (m, k), W (n, k), y (m, n), row-major float32.
//
// Each product is oneDNN's sgemm (the library MindSpore ships and links itself), which measured ~1.8x the GFLOP/s
// of MindSpore's own MatMul kernel per CPU second at a Llama layer's shapes. Our build of oneDNN runs each call on
// one thread, so the output goes in panels, one per thread (OpenMP), split along its longer side: each panel is
// still a large GEMM, and no two threads write the same element. config (1): threads (MindSpore's
// runtime_num_threads, so that several workers on one host do not each take every core; 0: OpenMP's default).
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernel_common.h"

using mindformers_kernels::thread_count;

extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

namespace {

constexpr int64_t kAlign = 16;  // panel edges on whole AVX-512 vectors of float32

struct Product {
  char transa, transb;
  int64_t m, n, k;
  const float *a;
  int64_t lda;
  const float *b;
  int64_t ldb;
  float *c;
  int64_t ldc;
};

// [begin, end) of panel `index` of `panels` over `size`, edges rounded to kAlign
void panel_range(int64_t size, int panels, int index, int64_t *begin, int64_t *end) {
  const int64_t step = ((size + panels - 1) / panels + kAlign - 1) / kAlign * kAlign;
  *begin = std::min(size, index * step);
  *end = std::min(size, *begin + step);
}

// C's rows [begin, end) when split along m, else its columns: the operand that holds them is offset to match
void run_panel(const Product &p, bool along_m, int64_t begin, int64_t end) {
  if (end <= begin) return;
  if (along_m) {
    const float *a = p.a + (p.transa == 'N' ? begin * p.lda : begin);
    dnnl_sgemm(p.transa, p.transb, end - begin, p.n, p.k, 1.f, a, p.lda, p.b, p.ldb, 0.f, p.c + begin * p.ldc, p.ldc);
  } else {
    const float *b = p.b + (p.transb == 'N' ? begin : begin * p.ldb);
    dnnl_sgemm(p.transa, p.transb, p.m, end - begin, p.k, 1.f, p.a, p.lda, b, p.ldb, 0.f, p.c + begin, p.ldc);
  }
}

void run(const Product &p, const float *config) {
  const int threads = thread_count(config[0]);
  const bool along_m = p.m >= p.n;
  const int64_t size = along_m ? p.m : p.n;
  const int panels = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, size / kAlign)));
  if (panels == 1) {
    run_panel(p, along_m, 0, size);
    return;
  }
#pragma omp parallel for num_threads(panels) schedule(static, 1)
  for (int index = 0; index < panels; ++index) {
    int64_t begin, end;
    panel_range(size, panels, index, &begin, &end);
    run_panel(p, along_m, begin, end);
  }
}

// C = op(A) op(B), (m, n), for the op's inputs A, B, config and its output C
int product(int nparam, void **params, char transa, char transb, int64_t m, int64_t n, int64_t k) {
  if (nparam != 4) return 1;
  const auto *a = static_cast<const float *>(params[0]);
  const auto *b = static_cast<const float *>(params[1]);
  const int64_t lda = transa == 'N' ? k : m, ldb = transb == 'N' ? n : k;
  run({transa, transb, m, n, k, a, lda, b, ldb, static_cast<float *>(params[3]), n},
      static_cast<const float *>(params[2]));
  return 0;
}

}  // namespace

// params: x (m, k), W (n, k), config | y = x W^T (m, n)
extern "C" int LinearForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  return product(nparam, params, 'N', 'T', shapes[0][0], shapes[1][0], shapes[0][1]);
}

// params: dy (m, n), W (n, k), config | dx = dy W (m, k)
extern "C" int LinearInputGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                               void *stream, void *extra) {
  return product(nparam, params, 'N', 'N', shapes[0][0], shapes[1][1], shapes[0][1]);
}

// params: dy (m, n), x (m, k), config | dW = dy^T x (n, k)
extern "C" int LinearWeightGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                void *stream, void *extra) {
  return product(nparam, params, 'T', 'N', shapes[0][1], shapes[1][1], shapes[0][0]);
}
