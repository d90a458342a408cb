// Fused exact attention for MindSpore's CPU backend (an "aot" Custom op, mindformers/kernels/cpu_attention.py).
//
// softmax(scale * q k^T + bias, causal / sliding-window / padding mask) v, flash-attention style: query rows go in
// tiles of kRowTile; a tile's scores exist only for the key columns its rows can see (up to its last row; with a
// sliding window from its first row's window start) and only while the tile is computed. The forward keeps each
// row's log-sum-exp; the backward recomputes a tile's probabilities from it. The tile products are oneDNN's sgemm
// (the library MindSpore ships and links itself), single-threaded per call; OpenMP runs tiles (forward) or key/value
// heads (backward: each owns its dK, dV rows) in parallel.
//
// Layouts (row-major float32): q, context, d_q (b, heads, s, d); k, v, d_k, d_v (b, kv_heads, s, d), query head h
// served by key/value head h / (heads / kv_heads); keep (1 or b, s): < 0.5 where a key is padding; negative_slopes
// (heads): ALiBi's bias slope * (query position - key position), zeros without ALiBi; config (3): scale, sliding
// window (0: none), threads (MindSpore's runtime_num_threads, so that several workers on one host do not each take
// every core; 0: OpenMP's default); lse (b, heads, s) (any trailing 1s). A row that sees no key gets a zero context.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

namespace {

constexpr int64_t kRowTile = 64;
constexpr int64_t kChunk = 512;
constexpr size_t kCopiesBytes = size_t(1) << 30;  // keys (forward) or rows (backward) whose scores a tile holds at once
constexpr float kBlocked = -1e30f;  // finite: exp(kBlocked - anything finite) is exactly 0
constexpr float kNoKeys = 1e30f;    // the lse of a row that sees no key: the backward's exp(s - lse) is then 0

struct Problem {
  int64_t batch, heads, kv_heads, seq, dim, keep_rows;
  float scale;
  int64_t window;
  int threads;
  const float *keep, *negative_slopes;

  Problem(void **params, int *ndims, int64_t **shapes) {
    const int64_t *q = shapes[0];
    batch = q[0];
    heads = q[1];
    seq = q[2];
    dim = q[3];
    kv_heads = shapes[1][1];
    keep_rows = shapes[3][0];
    keep = static_cast<const float *>(params[3]);
    negative_slopes = static_cast<const float *>(params[4]);
    const float *config = static_cast<const float *>(params[5]);
    scale = config[0];
    window = static_cast<int64_t>(config[1]);
    threads = config[2] > 0 ? static_cast<int>(config[2]) : omp_get_max_threads();
  }
  int64_t repeats() const { return heads / kv_heads; }
  int64_t tiles() const { return (seq + kRowTile - 1) / kRowTile; }
  int64_t first_key(int64_t first_row) const { return window > 0 ? std::max<int64_t>(0, first_row - window + 1) : 0; }
  // one past the last row that sees key tile j's keys
  int64_t last_row(int64_t j) const {
    const int64_t k1 = std::min(seq, (j + 1) * kRowTile);
    return window > 0 ? std::min(seq, k1 - 1 + window) : seq;
  }
  // offsets of head h's (b, h) matrix and of its key/value head's
  int64_t q_offset(int64_t b, int64_t h) const { return (b * heads + h) * seq * dim; }
  int64_t kv_offset(int64_t b, int64_t h) const { return (b * kv_heads + h / repeats()) * seq * dim; }
};

// Scores of rows i0..i1-1 over keys k0..k1-1 into s (rows, k1 - k0): scaled, biased, blocked ones kBlocked.
void tile_scores(const Problem &p, int64_t b, int64_t h, int64_t i0, int64_t i1, int64_t k0, int64_t k1,
                 const float *q, const float *k, float *s) {
  const int64_t rows = i1 - i0, keys = k1 - k0, d = p.dim;
  dnnl_sgemm('N', 'T', rows, keys, d, p.scale, q + i0 * d, d, k + k0 * d, d, 0.f, s, keys);
  const float *keep = p.keep + (p.keep_rows == 1 ? 0 : b) * p.seq + k0;
  const float slope = p.negative_slopes[h];
  if (slope == 0.f && p.window == 0 && std::all_of(keep, keep + keys, [](float x) { return x >= 0.5f; })) {
    // no bias, no window, no padding key (training's usual case): only the keys after a row's own are blocked
    for (int64_t r = 0; r < rows; ++r)
      std::fill(s + r * keys + std::clamp<int64_t>(i0 + r - k0 + 1, 0, keys), s + (r + 1) * keys, kBlocked);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = i0 + r;
    const int64_t lo = (p.window > 0 ? std::max<int64_t>(k0, i - p.window + 1) : k0) - k0, hi = i - k0;
    float *row = s + r * keys;
    for (int64_t j = 0; j < keys; ++j) {
      const bool seen = j >= lo && j <= hi && keep[j] >= 0.5f;
      row[j] = seen ? row[j] + slope * static_cast<float>(hi - j) : kBlocked;
    }
  }
}

}  // namespace

// params: q, k, v, keep, negative_slopes, config | context, lse
extern "C" int AttentionForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                void *stream, void *extra) {
  if (nparam != 8) return 1;
  const Problem p(params, ndims, shapes);
  const float *q = static_cast<const float *>(params[0]);
  const float *k = static_cast<const float *>(params[1]);
  const float *v = static_cast<const float *>(params[2]);
  float *context = static_cast<float *>(params[6]);
  float *lse = static_cast<float *>(params[7]);
  const int64_t tiles = p.tiles(), tasks = p.batch * p.heads * tiles, d = p.dim;
#pragma omp parallel num_threads(p.threads)
  {
    std::vector<float> s(kRowTile * kChunk), top(kRowTile), total(kRowTile);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      // the longest (last) tiles first: dynamic scheduling then balances the causal triangle
      const int64_t tile = tiles - 1 - task % tiles, bh = task / tiles, b = bh / p.heads, h = bh % p.heads;
      const int64_t i0 = tile * kRowTile, i1 = std::min(p.seq, i0 + kRowTile), rows = i1 - i0;
      float *out = context + p.q_offset(b, h) + i0 * d;
      std::fill(top.begin(), top.end(), kBlocked);
      std::fill(total.begin(), total.end(), 0.f);
      // online softmax over chunks of keys: each row keeps its running max and sum, its context rescaled as the max
      // grows, so a tile's scores exist for kChunk keys at a time (in cache) whatever the length
      for (int64_t c0 = p.first_key(i0); c0 < i1; c0 += kChunk) {
        const int64_t c1 = std::min(i1, c0 + kChunk), keys = c1 - c0;
        tile_scores(p, b, h, i0, i1, c0, c1, q + p.q_offset(b, h), k + p.kv_offset(b, h), s.data());
        for (int64_t r = 0; r < rows; ++r) {
          float *row = s.data() + r * keys;
          float high = top[r];
          for (int64_t j = 0; j < keys; ++j) high = std::max(high, row[j]);
          if (high <= kBlocked) {  // no key seen yet
            std::fill(row, row + keys, 0.f);
            continue;
          }
          const float rescale = std::exp(top[r] - high);  // 0 on the first keys seen: out starts from nothing
          float sum = 0.f;
          for (int64_t j = 0; j < keys; ++j) {
            row[j] = std::exp(row[j] - high);
            sum += row[j];
          }
          total[r] = total[r] * rescale + sum;
          top[r] = high;
          if (c0 > p.first_key(i0))
            for (int64_t e = 0; e < d; ++e) out[r * d + e] *= rescale;
        }
        dnnl_sgemm('N', 'N', rows, d, keys, 1.f, s.data(), keys, v + p.kv_offset(b, h) + c0 * d, d,
                   c0 > p.first_key(i0) ? 1.f : 0.f, out, d);
      }
      float *row_lse = lse + (b * p.heads + h) * p.seq + i0;
      for (int64_t r = 0; r < rows; ++r) {  // unnormalised sums times V, then each context row scaled
        const float inverse = total[r] > 0.f ? 1.f / total[r] : 0.f;
        for (int64_t e = 0; e < d; ++e) out[r * d + e] *= inverse;
        row_lse[r] = total[r] > 0.f ? top[r] + std::log(total[r]) : kNoKeys;
      }
    }
  }
  return 0;
}

namespace {

struct Gradients {
  const float *q, *k, *v, *d_context, *lse, *row_dot;
  float *d_k, *d_v;
};

// Key tile j's share of query head h's gradients: dK, dV rows k0..k1-1 (only this call writes them) and the
// contributions to dQ of the rows that see the tile (rows k0.. up to the window's end), added into d_q (head h's
// (s, d) matrix: the output itself, or a thread's private buffer). probs, d_scores: (seq, kRowTile) each.
void key_tile_gradients(const Problem &p, const Gradients &g, int64_t b, int64_t h, int64_t j, float *d_q,
                        float *probs, float *d_scores) {
  const int64_t d = p.dim, qo = p.q_offset(b, h), kvo = p.kv_offset(b, h);
  const int64_t k0 = j * kRowTile, k1 = std::min(p.seq, k0 + kRowTile), keys = k1 - k0, last = p.last_row(j);
  for (int64_t r0 = k0; r0 < last; r0 += kChunk) {  // (kChunk, kRowTile) scores at a time: they stay in cache
    const int64_t r1 = std::min(last, r0 + kChunk), rows = r1 - r0;
    tile_scores(p, b, h, r0, r1, k0, k1, g.q + qo, g.k + kvo, probs);
    const float *lse = g.lse + (b * p.heads + h) * p.seq + r0;
    for (int64_t r = 0; r < rows; ++r) {
      float *row = probs + r * keys;
      for (int64_t c = 0; c < keys; ++c) row[c] = std::exp(row[c] - lse[r]);
    }
    const float *d_o = g.d_context + qo + r0 * d;
    dnnl_sgemm('T', 'N', keys, d, rows, 1.f, probs, keys, d_o, d, 1.f, g.d_v + kvo + k0 * d, d);
    dnnl_sgemm('N', 'T', rows, keys, d, 1.f, d_o, d, g.v + kvo + k0 * d, d, 0.f, d_scores, keys);
    const float *row_dot = g.row_dot + (b * p.heads + h) * p.seq + r0;
    for (int64_t r = 0; r < rows; ++r) {
      const float *row = probs + r * keys;
      float *d_row = d_scores + r * keys;
      for (int64_t c = 0; c < keys; ++c) d_row[c] = row[c] * (d_row[c] - row_dot[r]);
    }
    dnnl_sgemm('N', 'N', rows, d, keys, p.scale, d_scores, keys, g.k + kvo + k0 * d, d, 1.f, d_q + r0 * d, d);
    dnnl_sgemm('T', 'N', keys, d, rows, p.scale, d_scores, keys, g.q + qo + r0 * d, d, 1.f,
               g.d_k + kvo + k0 * d, d);
  }
}

}  // namespace

// params: q, k, v, keep, negative_slopes, config, context, lse, d_context | d_q, d_k, d_v
// P = exp(S - lse); dV += P^T dO; dS = P * (dO V^T - rowsum(dO * O)); dQ += scale dS K; dK += scale dS^T Q.
// The work goes in key tiles (a tile's dK, dV rows are its own). With enough key/value heads to share out, a task
// owns a head's whole group (its query heads' dQ too); otherwise (batch 1 with MQA/GQA) the key tiles of every
// head run in parallel, each thread adding dQ into a private copy of it (bounded by kCopiesBytes), summed after.
extern "C" int AttentionBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam != 12) return 1;
  const Problem p(params, ndims, shapes);
  const float *context = static_cast<const float *>(params[6]);
  float *d_q = static_cast<float *>(params[9]);
  std::vector<float> row_dot(p.batch * p.heads * p.seq);
  const Gradients g{static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                    static_cast<const float *>(params[2]), static_cast<const float *>(params[8]),
                    static_cast<const float *>(params[7]), row_dot.data(), static_cast<float *>(params[10]),
                    static_cast<float *>(params[11])};
  const int64_t tiles = p.tiles(), d = p.dim, repeats = p.repeats(), rows = p.batch * p.heads * p.seq;
  std::memset(d_q, 0, sizeof(float) * rows * d);
  std::memset(g.d_k, 0, sizeof(float) * p.batch * p.kv_heads * p.seq * d);
  std::memset(g.d_v, 0, sizeof(float) * p.batch * p.kv_heads * p.seq * d);
#pragma omp parallel for num_threads(p.threads)
  for (int64_t i = 0; i < rows; ++i) {
    float dot = 0.f;
    for (int64_t c = 0; c < d; ++c) dot += context[i * d + c] * g.d_context[i * d + c];
    row_dot[i] = dot;
  }
  const int64_t groups = p.batch * p.kv_heads;
  // the few-head schedule's dQ copies: at most kCopiesBytes (else the head-per-task schedule, whatever its balance)
  const bool few_heads = groups % p.threads != 0 && groups < 4 * p.threads &&
                         sizeof(float) * (p.threads - 1) * rows * d <= kCopiesBytes;
  if (!few_heads) {
#pragma omp parallel num_threads(p.threads)
    {
      std::vector<float> probs(kChunk * kRowTile), d_scores(kChunk * kRowTile);
#pragma omp for schedule(dynamic)
      for (int64_t task = 0; task < groups; ++task) {
        const int64_t b = task / p.kv_heads, kv = task % p.kv_heads;
        for (int64_t h = kv * repeats; h < (kv + 1) * repeats; ++h)
          for (int64_t j = 0; j < tiles; ++j)
            key_tile_gradients(p, g, b, h, j, d_q + p.q_offset(b, h), probs.data(), d_scores.data());
      }
    }
    return 0;
  }
  // one task per key tile of a key/value head (the tiles seen by the most rows first), over its query heads, each
  // thread adding dQ into its own copy (thread 0: dQ itself), summed at the end: one parallel region, no locks
  const size_t size = static_cast<size_t>(rows) * d;
  std::vector<float> copies(static_cast<size_t>(p.threads - 1) * size);
#pragma omp parallel num_threads(p.threads)
  {
    const int thread = omp_get_thread_num();
    float *own = thread == 0 ? d_q : copies.data() + (thread - 1) * size;
    if (thread > 0) std::fill(own, own + size, 0.f);
    std::vector<float> probs(kChunk * kRowTile), d_scores(kChunk * kRowTile);
#pragma omp barrier
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < groups * tiles; ++task) {
      const int64_t j = task / groups, b = task % groups / p.kv_heads, kv = task % p.kv_heads;
      for (int64_t h = kv * repeats; h < (kv + 1) * repeats; ++h)
        key_tile_gradients(p, g, b, h, j, own + p.q_offset(b, h), probs.data(), d_scores.data());
    }
    const int used = omp_get_num_threads();
#pragma omp for
    for (size_t i = 0; i < size; ++i)
      for (int t = 1; t < used; ++t) d_q[i] += copies[(t - 1) * size + i];
  }
  return 0;
}
