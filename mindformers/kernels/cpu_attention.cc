// Fused exact attention for MindSpore's CPU backend (an "aot" Custom op, mindformers/kernels/cpu_attention.py).
//
// softmax(scale * q k^T + bias, causal / sliding-window / padding mask) v, flash-attention style: query rows go in
// tiles of kRowTile; a tile's scores exist only for the key columns its rows can see (up to its last row; with a
// sliding window from its first row's window start) and only while the tile is computed. The forward keeps each
// row's log-sum-exp; the backward recomputes a tile's probabilities from it. The tile products are oneDNN's sgemm
// (the library MindSpore ships and links itself), single-threaded per call; OpenMP runs tiles (forward) or key/value
// heads (backward: each owns its dK, dV rows) in parallel.
//
// Layouts (row-major float32): q, context, d_q (b, s, heads, d); k, v, d_k, d_v (b, s, kv_heads, d), query head h
// served by key/value head h / (heads / kv_heads): tokens before heads, as the projections give them and the output
// projection takes them, so no transposes surround the op. The heads are copied into (s, d) matrices for the GEMMs
// and the results back: GEMMs over rows heads * d apart took 30% more CPU time (seq 2048), and MindSpore's
// transposes around the op ~2 CPU-ms each. keep (1 or b, s): < 0.5 where a key is padding; negative_slopes (heads):
// ALiBi's bias slope * (query position - key position), zeros without ALiBi; config (3): scale, sliding window (0:
// none), threads (MindSpore's runtime_num_threads, so that several workers on one host do not each take every core;
// 0: OpenMP's default); lse (b, heads, s) (any trailing 1s). A row that sees no key gets a zero context.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernel_common.h"

using mindformers_kernels::thread_count;

extern "C" int dnnl_sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

namespace {

constexpr int64_t kRowTile = 64;
constexpr int64_t kChunk = 512;  // keys (forward) or rows (backward) whose scores a tile holds at once
constexpr size_t kCopiesBytes = size_t(1) << 30;
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
    seq = q[1];
    heads = q[2];
    dim = q[3];
    kv_heads = shapes[1][2];
    keep_rows = shapes[3][0];
    keep = static_cast<const float *>(params[3]);
    negative_slopes = static_cast<const float *>(params[4]);
    const float *config = static_cast<const float *>(params[5]);
    scale = config[0];
    window = static_cast<int64_t>(config[1]);
    threads = thread_count(config[2]);
  }
  int64_t repeats() const { return heads / kv_heads; }
  int64_t tiles() const { return (seq + kRowTile - 1) / kRowTile; }
  size_t head_size() const { return static_cast<size_t>(seq) * dim; }
  int64_t first_key(int64_t first_row) const { return window > 0 ? std::max<int64_t>(0, first_row - window + 1) : 0; }
  // one past the last row that sees key tile j's keys
  int64_t last_row(int64_t j) const {
    const int64_t k1 = std::min(seq, (j + 1) * kRowTile);
    return window > 0 ? std::min(seq, k1 - 1 + window) : seq;
  }
  // the first element of head h's rows in a (b, s, n, d) tensor (the rows n * d apart)
  int64_t token_offset(int64_t b, int64_t n, int64_t h) const { return (b * seq * n + h) * dim; }
  // the first element of head h's rows in lse (b, heads, s)
  int64_t lse_offset(int64_t b, int64_t h) const { return (b * heads + h) * seq; }
};

// head h of a (b, s, n, d) tensor into an (s, d) matrix, or back
void head_in(const Problem &p, const float *x, int64_t n, int64_t b, int64_t h, float *matrix) {
  const float *from = x + p.token_offset(b, n, h);
  for (int64_t i = 0; i < p.seq; ++i) std::memcpy(matrix + i * p.dim, from + i * n * p.dim, sizeof(float) * p.dim);
}

void head_out(const Problem &p, const float *matrix, float *x, int64_t n, int64_t b, int64_t h) {
  float *to = x + p.token_offset(b, n, h);
  for (int64_t i = 0; i < p.seq; ++i) std::memcpy(to + i * n * p.dim, matrix + i * p.dim, sizeof(float) * p.dim);
}

// Scores of rows i0..i1-1 over keys k0..k1-1 into s (rows, k1 - k0): scaled, biased, blocked ones kBlocked. q, k:
// head h's (s, d) matrices.
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

// Per thread: a tile's scores and its rows' running max and sum
struct TileScratch {
  std::vector<float> s = std::vector<float>(kRowTile * kChunk), top = std::vector<float>(kRowTile),
                     total = std::vector<float>(kRowTile);
};

// Rows i0.. (a tile) of query head h (q: its (s, d) matrix): their context into out (the tile's (rows, d)) and
// log-sum-exps into lse (the head's (s) row). Online softmax over chunks of keys: each row keeps its running max and sum, its context rescaled as
// the max grows, so a tile's scores exist for kChunk keys at a time (in cache) whatever the length.
void forward_tile(const Problem &p, int64_t b, int64_t h, int64_t i0, const float *q, const float *k, const float *v,
                  float *out, float *lse, TileScratch &t) {
  const int64_t i1 = std::min(p.seq, i0 + kRowTile), rows = i1 - i0, d = p.dim;
  float *s = t.s.data(), *top = t.top.data(), *total = t.total.data();
  std::fill(top, top + rows, kBlocked);
  std::fill(total, total + rows, 0.f);
  for (int64_t c0 = p.first_key(i0); c0 < i1; c0 += kChunk) {
    const int64_t c1 = std::min(i1, c0 + kChunk), keys = c1 - c0;
    tile_scores(p, b, h, i0, i1, c0, c1, q, k, s);
    for (int64_t r = 0; r < rows; ++r) {
      float *row = s + r * keys;
      float high = top[r];
      for (int64_t j = 0; j < keys; ++j) high = std::max(high, row[j]);
      if (high <= kBlocked) {  // no key seen yet
        std::fill(row, row + keys, 0.f);
        continue;
      }
      // 0 on the first keys seen (out starts from nothing), not computed: expf's underflow path is slow
      const float rescale = top[r] <= kBlocked ? 0.f : std::exp(top[r] - high);
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
    dnnl_sgemm('N', 'N', rows, d, keys, 1.f, s, keys, v + c0 * d, d, c0 > p.first_key(i0) ? 1.f : 0.f, out, d);
  }
  for (int64_t r = 0; r < rows; ++r) {  // unnormalised sums times V, then each context row scaled
    const float inverse = total[r] > 0.f ? 1.f / total[r] : 0.f;
    for (int64_t e = 0; e < d; ++e) out[r * d + e] *= inverse;
    lse[i0 + r] = total[r] > 0.f ? top[r] + std::log(total[r]) : kNoKeys;
  }
}

// One query head's (or key/value head's) inputs and gradients as (s, d) matrices and (s) rows
struct Gradients {
  const float *q, *k, *v, *d_context, *lse, *row_dot;
  float *d_q, *d_k, *d_v;
};

// rowsum(dO * O) of query head h's rows: O, dO (b, s, heads, d)
void row_dots(const Problem &p, const float *context, const float *d_context, int64_t b, int64_t h, float *dots) {
  const int64_t d = p.dim, at = p.token_offset(b, p.heads, h);
  for (int64_t i = 0; i < p.seq; ++i) {
    const float *o = context + at + i * p.heads * d, *d_o = d_context + at + i * p.heads * d;
    float dot = 0.f;
    for (int64_t c = 0; c < d; ++c) dot += o[c] * d_o[c];
    dots[i] = dot;
  }
}

// Key tile j's share of query head h's gradients: dK, dV rows k0..k1-1 (only this call writes them) and the
// contributions to dQ of the rows that see the tile (rows k0.. up to the window's end), added into g.d_q (the
// head's own, or a thread's private copy). probs, d_scores: (kChunk, kRowTile) each.
void key_tile_gradients(const Problem &p, const Gradients &g, int64_t b, int64_t h, int64_t j, float *probs,
                        float *d_scores) {
  const int64_t d = p.dim;
  const int64_t k0 = j * kRowTile, k1 = std::min(p.seq, k0 + kRowTile), keys = k1 - k0, last = p.last_row(j);
  for (int64_t r0 = k0; r0 < last; r0 += kChunk) {  // (kChunk, kRowTile) scores at a time: they stay in cache
    const int64_t r1 = std::min(last, r0 + kChunk), rows = r1 - r0;
    tile_scores(p, b, h, r0, r1, k0, k1, g.q, g.k, probs);
    for (int64_t r = 0; r < rows; ++r) {
      float *row = probs + r * keys;
      for (int64_t c = 0; c < keys; ++c) row[c] = std::exp(row[c] - g.lse[r0 + r]);
    }
    const float *d_o = g.d_context + r0 * d;
    dnnl_sgemm('T', 'N', keys, d, rows, 1.f, probs, keys, d_o, d, 1.f, g.d_v + k0 * d, d);
    dnnl_sgemm('N', 'T', rows, keys, d, 1.f, d_o, d, g.v + k0 * d, d, 0.f, d_scores, keys);
    for (int64_t r = 0; r < rows; ++r) {
      const float *row = probs + r * keys;
      float *d_row = d_scores + r * keys;
      for (int64_t c = 0; c < keys; ++c) d_row[c] = row[c] * (d_row[c] - g.row_dot[r0 + r]);
    }
    dnnl_sgemm('N', 'N', rows, d, keys, p.scale, d_scores, keys, g.k + k0 * d, d, 1.f, g.d_q + r0 * d, d);
    dnnl_sgemm('T', 'N', keys, d, rows, p.scale, d_scores, keys, g.q + r0 * d, d, 1.f, g.d_k + k0 * d, d);
  }
}

// the backward's tensors: q, k, v, context, lse, d_context in, d_q, d_k, d_v out
struct Tensors {
  const float *q, *k, *v, *context, *lse, *d_context;
  float *d_q, *d_k, *d_v;

  explicit Tensors(void **params)
      : q(static_cast<const float *>(params[0])), k(static_cast<const float *>(params[1])),
        v(static_cast<const float *>(params[2])), context(static_cast<const float *>(params[6])),
        lse(static_cast<const float *>(params[7])), d_context(static_cast<const float *>(params[8])),
        d_q(static_cast<float *>(params[9])), d_k(static_cast<float *>(params[10])),
        d_v(static_cast<float *>(params[11])) {}
};

// A task per (batch, key/value head): its group of query heads, all key tiles, its own dK, dV and the group's dQ.
void backward_by_heads(const Problem &p, const Tensors &x) {
  const int64_t groups = p.batch * p.kv_heads, size = p.head_size();
#pragma omp parallel num_threads(p.threads)
  {
    std::vector<float> q(size), k(size), v(size), d_o(size), d_q(size), d_k(size), d_v(size), dots(p.seq);
    std::vector<float> probs(kChunk * kRowTile), d_scores(kChunk * kRowTile);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < groups; ++task) {
      const int64_t b = task / p.kv_heads, kv = task % p.kv_heads;
      head_in(p, x.k, p.kv_heads, b, kv, k.data());
      head_in(p, x.v, p.kv_heads, b, kv, v.data());
      std::fill(d_k.begin(), d_k.end(), 0.f);
      std::fill(d_v.begin(), d_v.end(), 0.f);
      for (int64_t h = kv * p.repeats(); h < (kv + 1) * p.repeats(); ++h) {
        head_in(p, x.q, p.heads, b, h, q.data());
        head_in(p, x.d_context, p.heads, b, h, d_o.data());
        row_dots(p, x.context, x.d_context, b, h, dots.data());
        std::fill(d_q.begin(), d_q.end(), 0.f);
        const Gradients g{q.data(), k.data(), v.data(), d_o.data(), x.lse + p.lse_offset(b, h), dots.data(),
                          d_q.data(), d_k.data(), d_v.data()};
        for (int64_t j = 0; j < p.tiles(); ++j) key_tile_gradients(p, g, b, h, j, probs.data(), d_scores.data());
        head_out(p, d_q.data(), x.d_q, p.heads, b, h);
      }
      head_out(p, d_k.data(), x.d_k, p.kv_heads, b, kv);
      head_out(p, d_v.data(), x.d_v, p.kv_heads, b, kv);
    }
  }
}

// Too few key/value heads to share out (batch 1 with MQA/GQA): a task per key tile of a key/value head (the tiles
// seen by the most rows first), over its query heads, each thread adding dQ into its own copy (bounded by
// kCopiesBytes), summed at the end; every head copied to (s, d) matrices first, the results back at the end.
void backward_by_key_tiles(const Problem &p, const Tensors &x) {
  const size_t size = p.head_size(), q_heads = p.batch * p.heads, kv_heads = p.batch * p.kv_heads;
  std::vector<float> q(q_heads * size), d_o(q_heads * size), dots(q_heads * p.seq), k(kv_heads * size),
      v(kv_heads * size), d_q(p.threads * q_heads * size), d_k(kv_heads * size), d_v(kv_heads * size);
  const int64_t groups = p.batch * p.kv_heads, tiles = p.tiles();
#pragma omp parallel num_threads(p.threads)
  {
#pragma omp for
    for (size_t head = 0; head < q_heads; ++head) {
      const int64_t b = head / p.heads, h = head % p.heads;
      head_in(p, x.q, p.heads, b, h, q.data() + head * size);
      head_in(p, x.d_context, p.heads, b, h, d_o.data() + head * size);
      row_dots(p, x.context, x.d_context, b, h, dots.data() + head * p.seq);
    }
#pragma omp for
    for (size_t head = 0; head < kv_heads; ++head) {
      head_in(p, x.k, p.kv_heads, head / p.kv_heads, head % p.kv_heads, k.data() + head * size);
      head_in(p, x.v, p.kv_heads, head / p.kv_heads, head % p.kv_heads, v.data() + head * size);
    }
    float *own = d_q.data() + omp_get_thread_num() * q_heads * size;
    std::vector<float> probs(kChunk * kRowTile), d_scores(kChunk * kRowTile);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < groups * tiles; ++task) {
      const int64_t j = task / groups, group = task % groups, b = group / p.kv_heads, kv = group % p.kv_heads;
      for (int64_t h = kv * p.repeats(); h < (kv + 1) * p.repeats(); ++h) {
        const size_t head = b * p.heads + h;
        const Gradients g{q.data() + head * size, k.data() + group * size, v.data() + group * size,
                          d_o.data() + head * size, x.lse + p.lse_offset(b, h), dots.data() + head * p.seq,
                          own + head * size, d_k.data() + group * size, d_v.data() + group * size};
        key_tile_gradients(p, g, b, h, j, probs.data(), d_scores.data());
      }
    }
    const int used = omp_get_num_threads();
#pragma omp for
    for (size_t i = 0; i < q_heads * size; ++i)
      for (int t = 1; t < used; ++t) d_q[i] += d_q[t * q_heads * size + i];
#pragma omp for
    for (size_t head = 0; head < q_heads; ++head)
      head_out(p, d_q.data() + head * size, x.d_q, p.heads, head / p.heads, head % p.heads);
#pragma omp for
    for (size_t head = 0; head < kv_heads; ++head) {
      head_out(p, d_k.data() + head * size, x.d_k, p.kv_heads, head / p.kv_heads, head % p.kv_heads);
      head_out(p, d_v.data() + head * size, x.d_v, p.kv_heads, head / p.kv_heads, head % p.kv_heads);
    }
  }
}

// Heads of a (b, s, n, d) tensor as (s, d) matrices, each copied by the first task that needs it (the others
// needing it wait for that copy), so that small tasks share the copies without a pass over the tensor before them
struct LazyHeads {
  const Problem &p;
  const float *x;
  int64_t n;
  std::vector<float> matrices;
  std::vector<std::once_flag> copied;

  LazyHeads(const Problem &problem, const void *tensor, int64_t heads)
      : p(problem), x(static_cast<const float *>(tensor)), n(heads), matrices(problem.batch * heads *
        problem.head_size()), copied(problem.batch * heads) {}
  const float *head(int64_t b, int64_t h) {
    float *matrix = matrices.data() + (b * n + h) * p.head_size();
    std::call_once(copied[b * n + h], [&] { head_in(p, x, n, b, h, matrix); });
    return matrix;
  }
};

}  // namespace

// params: q, k, v, keep, negative_slopes, config | context, lse
// A task per tile of a query head (the longest, last, tiles first: dynamic scheduling then balances the causal
// triangle, also when a thread is held up by other load); each copies its context rows into place.
extern "C" int AttentionForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                void *stream, void *extra) {
  if (nparam != 8) return 1;
  const Problem p(params, ndims, shapes);
  float *context = static_cast<float *>(params[6]);
  float *lse = static_cast<float *>(params[7]);
  LazyHeads queries(p, params[0], p.heads), keys(p, params[1], p.kv_heads), values(p, params[2], p.kv_heads);
  const int64_t tiles = p.tiles(), d = p.dim;
#pragma omp parallel num_threads(p.threads)
  {
    std::vector<float> out(kRowTile * d);
    TileScratch scratch;
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < p.batch * p.heads * tiles; ++task) {
      const int64_t tile = tiles - 1 - task % tiles, b = task / tiles / p.heads, h = task / tiles % p.heads;
      const int64_t i0 = tile * kRowTile, rows = std::min(p.seq, i0 + kRowTile) - i0, kv = h / p.repeats();
      forward_tile(p, b, h, i0, queries.head(b, h), keys.head(b, kv), values.head(b, kv), out.data(),
                   lse + p.lse_offset(b, h), scratch);
      float *to = context + p.token_offset(b, p.heads, h) + i0 * p.heads * d;
      for (int64_t r = 0; r < rows; ++r) std::memcpy(to + r * p.heads * d, out.data() + r * d, sizeof(float) * d);
    }
  }
  return 0;
}

// params: q, k, v, keep, negative_slopes, config, context, lse, d_context | d_q, d_k, d_v
// P = exp(S - lse); dV += P^T dO; dS = P * (dO V^T - rowsum(dO * O)); dQ += scale dS K; dK += scale dS^T Q.
// The work goes in key tiles (a tile's dK, dV rows are its own).
extern "C" int AttentionBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam != 12) return 1;
  const Problem p(params, ndims, shapes);
  const int64_t groups = p.batch * p.kv_heads;
  // the key-tile schedule's dQ copies: at most kCopiesBytes (else a task per head, whatever its balance)
  const bool few_heads = groups % p.threads != 0 && groups < 4 * p.threads &&
                         sizeof(float) * p.threads * p.batch * p.heads * p.head_size() <= kCopiesBytes;
  if (few_heads)
    backward_by_key_tiles(p, Tensors(params));
  else
    backward_by_heads(p, Tensors(params));
  return 0;
}
