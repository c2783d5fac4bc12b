// Tile-based alpha compositing of projected Gaussians, forward and exact backward.
// Mirrors rasterize_pixels() in dyngauss/render/torch_reference.py: square tiles (any size gives the same
// result), per-tile order (depth, index), front-to-back compositing with early termination.
//
// Tile lists ("intersections"): Gaussian i = c*N + g overlaps gauss_offsets[i+1] - gauss_offsets[i] tiles.
// Its copies are stored per tile in depth order: isect_gauss[k] = g for k in tile_offsets[c*ntiles + t] ..
// tile_offsets[c*ntiles + t + 1]. isect_slot[k] is a row inside the Gaussian's own range of gauss_offsets,
// so the backward pass writes one gradient row per intersection without races and then reduces each
// Gaussian's rows in a fixed order (results do not depend on the thread count).
// spans [C*N,4] holds each Gaussian's inclusive pixel window (px0, px1, py0, py1): exactly the pixels whose
// centres pass the reference's |p - mean| <= extent test; empty when px0 > px1.
//
// The forward pass logs every contribution (pixel, Gaussian, exp(-sigma)) per tile, Gaussian by Gaussian, in
// per-thread buffers; kstart[k] is where intersection k's records start inside its tile's log and tile_log
// [C*ntiles,4] = (buffer, offset, entries processed, records) locates each tile's log. The backward pass
// replays a tile's log back to front instead of re-testing every pixel of every Gaussian: no exp, no
// threshold tests, only the pixels that contributed. The log costs ~8 bytes per contribution (float).
#include <omp.h>

#include <ATen/ops/from_blob.h>

#include "common.h"

namespace {

using dyngauss::num_threads;
using dyngauss::pixel_span;
using dyngauss::Splat;

struct Grid {
  int64_t W, H, ts, ntx, nty, ntiles;
};

Grid make_grid(int64_t width, int64_t height, int64_t tile_size) {
  TORCH_CHECK(width > 0 && height > 0, "image size must be positive, got ", width, "x", height);
  const int64_t ts = std::max<int64_t>(1, tile_size);
  const int64_t ntx = (width + ts - 1) / ts, nty = (height + ts - 1) / ts;
  return {width, height, ts, ntx, nty, ntx * nty};
}

// Pixel window [x0,x1) x [y0,y1) of tile `tid` (which also names its camera c).
struct TileBox {
  int64_t c, x0, y0, x1, y1;
  int64_t width() const { return x1 - x0; }
  int64_t npix() const { return (x1 - x0) * (y1 - y0); }
};

TileBox tile_box(const Grid& g, int64_t tid) {
  const int64_t c = tid / g.ntiles, t = tid % g.ntiles;
  const int64_t x0 = (t % g.ntx) * g.ts, y0 = (t / g.ntx) * g.ts;
  return {c, x0, y0, std::min(g.W, x0 + g.ts), std::min(g.H, y0 + g.ts)};
}

// How many intersections ahead the tile loops prefetch Gaussian records (hides cache misses).
constexpr int64_t kPrefetch = 4;

// Read-only view of everything the tile workers need.
template <typename T>
struct Scene {
  const Splat<T>* splats;  // [C*N] packed records
  const T* col;            // [C*N,D]
  const int64_t *toff, *islot;
  const int32_t* ig;
  int64_t N, D;
  Grid g;

  // Record of the Gaussian behind intersection k of camera c, and a hint to fetch it early.
  int64_t gauss(int64_t c, int64_t k) const { return c * N + ig[k]; }
  void prefetch(int64_t c, int64_t k) const {
    const int64_t i = gauss(c, k);
    __builtin_prefetch(splats + i);
    __builtin_prefetch(col + D * i);
  }

  // Pixel window of Gaussian sp inside tile b; false when empty.
  bool window(const Splat<T>& sp, const TileBox& b, int64_t& px0, int64_t& px1, int64_t& py0,
              int64_t& py1) const {
    px0 = std::max<int64_t>(sp.x0, b.x0);
    px1 = std::min<int64_t>(sp.x1, b.x1 - 1);
    py0 = std::max<int64_t>(sp.y0, b.y0);
    py1 = std::min<int64_t>(sp.y1, b.y1 - 1);
    return px0 <= px1 && py0 <= py1;
  }
};

// Packed records of all Gaussians of all cameras (built per call, in parallel; cheap next to compositing).
template <typename T>
std::vector<Splat<T>> make_splats(const T* m2, const T* con, const T* op, const int32_t* spans, int64_t CN) {
  std::vector<Splat<T>> out(CN);
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t i = 0; i < CN; ++i) out[i] = Splat<T>(m2 + 2 * i, con + 3 * i, op[i], spans + 4 * i);
  return out;
}

// Exact pixel window of a Gaussian's extent box (empty when culled) and the number of tiles it overlaps.
template <typename T>
int64_t pixel_window(const T* mu, const T* ext, const Grid& g, int32_t* s) {
  s[0] = 1;
  s[1] = 0;
  s[2] = 1;
  s[3] = 0;
  if (!(ext[0] > T(0) && ext[1] > T(0))) return 0;
  int64_t px0, px1, py0, py1;
  pixel_span(mu[0], ext[0], g.W, px0, px1);
  pixel_span(mu[1], ext[1], g.H, py0, py1);
  if (px0 > px1 || py0 > py1) return 0;
  s[0] = int32_t(px0);
  s[1] = int32_t(px1);
  s[2] = int32_t(py0);
  s[3] = int32_t(py1);
  return (px1 / g.ts - px0 / g.ts + 1) * (py1 / g.ts - py0 / g.ts + 1);
}

struct Bins {
  at::Tensor spans, tile_offsets, isect_gauss, isect_slot, gauss_offsets;
  int64_t pixels = 0;  // sum of the windows' areas: an upper bound on the number of contributions
};

// Live Gaussians of one camera sorted by (depth, index), as the reference's stable argsort (NaN depth last).
template <typename T>
std::vector<int32_t> depth_order(const T* depth, const int64_t* goff, int64_t N) {
  std::vector<std::pair<T, int32_t>> keys;
  keys.reserve(N);
  for (int64_t g = 0; g < N; ++g)
    if (goff[g + 1] > goff[g])
      keys.emplace_back(depth[g] == depth[g] ? depth[g] : std::numeric_limits<T>::infinity(), int32_t(g));
  std::sort(keys.begin(), keys.end());
  std::vector<int32_t> order(keys.size());
  for (size_t k = 0; k < keys.size(); ++k) order[k] = keys[k].second;
  return order;
}

// Calls f(tx, ty) for every tile overlapped by pixel window s, row by row.
template <typename F>
inline void for_each_tile(const int32_t* s, const Grid& g, F&& f) {
  for (int64_t ty = s[2] / g.ts; ty <= s[3] / g.ts; ++ty)
    for (int64_t tx = s[0] / g.ts; tx <= s[1] / g.ts; ++tx) f(tx, ty);
}

// Fill camera c's tile lists: counting sort by tile of its depth-ordered Gaussians.
template <typename T>
void bin_camera(int64_t c, const T* depth, const int64_t* goff, const int32_t* spans, int64_t N, const Grid& g,
                int64_t* toff, int32_t* ig, int64_t* is) {
  const int64_t* gc = goff + c * N;
  const std::vector<int32_t> order = depth_order(depth + c * N, gc, N);
  std::vector<int64_t> cursor(g.ntiles, 0);
  for (int32_t gi : order)
    for_each_tile(spans + 4 * (c * N + gi), g, [&](int64_t tx, int64_t ty) { cursor[ty * g.ntx + tx]++; });
  int64_t run = gc[0];  // this camera's intersections start where its Gaussians' slots start
  for (int64_t t = 0; t < g.ntiles; ++t) {
    toff[c * g.ntiles + t] = run;
    run += cursor[t];
    cursor[t] = toff[c * g.ntiles + t];
  }
  for (int32_t gi : order) {
    int64_t slot = gc[gi];
    for_each_tile(spans + 4 * (c * N + gi), g, [&](int64_t tx, int64_t ty) {
      const int64_t k = cursor[ty * g.ntx + tx]++;
      ig[k] = gi;
      is[k] = slot++;
    });
  }
}

// Build the per-tile, depth-sorted Gaussian lists of all cameras.
template <typename T>
Bins bin_gaussians(const T* m2, const T* ext, const T* depth, int64_t C, int64_t N, const Grid& g) {
  const int64_t CN = C * N;
  Bins b;
  b.spans = at::empty({CN, 4}, at::kInt);
  b.gauss_offsets = at::empty({CN + 1}, at::kLong);
  int32_t* spans = b.spans.data_ptr<int32_t>();
  int64_t* goff = b.gauss_offsets.data_ptr<int64_t>();
  goff[0] = 0;
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t i = 0; i < CN; ++i) goff[i + 1] = pixel_window(m2 + 2 * i, ext + 2 * i, g, spans + 4 * i);
  for (int64_t i = 0; i < CN; ++i) {
    goff[i + 1] += goff[i];
    const int32_t* sp = spans + 4 * i;
    if (sp[0] <= sp[1]) b.pixels += int64_t(sp[1] - sp[0] + 1) * (sp[3] - sp[2] + 1);
  }
  const int64_t n_isect = goff[CN];
  b.tile_offsets = at::empty({C * g.ntiles + 1}, at::kLong);
  b.isect_gauss = at::empty({n_isect}, at::kInt);
  b.isect_slot = at::empty({n_isect}, at::kLong);
  int64_t* toff = b.tile_offsets.data_ptr<int64_t>();
  int32_t* ig = b.isect_gauss.data_ptr<int32_t>();
  int64_t* is = b.isect_slot.data_ptr<int64_t>();
  toff[C * g.ntiles] = n_isect;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
  for (int64_t c = 0; c < C; ++c) bin_camera(c, depth, goff, spans, N, g, toff, ig, is);
  return b;
}

// One contribution of a Gaussian to a pixel, logged by the forward pass and replayed by the backward pass.
template <typename T>
struct Contribution {
  T G;              // exp(-sigma)
  uint16_t px, py;  // pixel inside the tile
};

// Where the forward pass wrote each tile's contribution log.
struct TileLog {
  int64_t buffer, offset, processed, records;
};

// Per-thread scratch of the forward pass (reused across tiles): per-pixel state of one tile, and the
// thread's contribution log (kept for the backward pass).
template <typename T>
struct FwdScratch {
  std::vector<T> Tp, acc, accA;
  std::vector<int32_t> done;  // int32 (not char) flags: char stores would alias every pointer
  std::vector<Contribution<T>>* log;
  bool record;  // log contributions (only when a backward pass will follow)
};

// Front-to-back compositing of one tile; writes image, alpha and final transmittance, and logs the
// contributions. DC > 0: compile-time channel count.
template <typename T, int DC>
void render_tile(const Scene<T>& sc, int64_t tid, T* img, T* alpha, T* T_final, int32_t* kstart, TileLog& tlog,
                 FwdScratch<T>& w) {
  const int64_t D = DC > 0 ? DC : sc.D;
  const TileBox b = tile_box(sc.g, tid);
  const int64_t tw = b.width(), npix = b.npix();
  w.Tp.assign(npix, T(1));
  w.acc.assign(npix * D, T(0));
  w.accA.assign(npix, T(0));
  w.done.assign(npix, 0);
  T *Tp = w.Tp.data(), *acc = w.acc.data(), *accA = w.accA.data();
  int32_t* done = w.done.data();
  std::vector<Contribution<T>>& log = *w.log;
  const int64_t log0 = int64_t(log.size());
  int64_t remaining = npix;
  const int64_t s = sc.toff[tid], e = sc.toff[tid + 1];
  int64_t k = s;
  for (int64_t j = s; j < std::min(e, s + kPrefetch); ++j) sc.prefetch(b.c, j);
  for (; k < e && remaining > 0; ++k) {
    if (k + kPrefetch < e) sc.prefetch(b.c, k + kPrefetch);
    kstart[k] = int32_t(int64_t(log.size()) - log0);
    const int64_t i = sc.gauss(b.c, k);
    const Splat<T>& sp = sc.splats[i];
    int64_t px0, px1, py0, py1;
    if (!sc.window(sp, b, px0, px1, py0, py1)) continue;
    const T* cl = sc.col + D * i;
    for (int64_t py = py0; py <= py1; ++py) {
      const T dy = dyngauss::centre_offset(py, sp.my);
      const int64_t row = (py - b.y0) * tw - b.x0;
      for (int64_t px = px0; px <= px1; ++px) {
        const int64_t p = row + px;
        if (done[p]) continue;
        T G, vis, al;
        if (!sp.alpha_at(dyngauss::centre_offset(px, sp.mx), dy, G, vis, al)) continue;
        const T Tcur = Tp[p], next_T = Tcur * (T(1) - al);
        if (next_T <= dyngauss::kTMin<T>) {  // stop before the Gaussian that would saturate the pixel
          done[p] = 1;
          --remaining;
          continue;
        }
        const T wt = al * Tcur;
        for (int64_t d = 0; d < D; ++d) acc[p * D + d] += wt * cl[d];
        accA[p] += wt;
        Tp[p] = next_T;
        if (w.record) log.push_back({G, uint16_t(px - b.x0), uint16_t(py - b.y0)});
      }
    }
  }
  tlog = {omp_get_thread_num(), log0, k - s, int64_t(log.size()) - log0};
  for (int64_t py = b.y0; py < b.y1; ++py)
    for (int64_t px = b.x0; px < b.x1; ++px) {
      const int64_t p = (py - b.y0) * tw + (px - b.x0), q = (b.c * sc.g.H + py) * sc.g.W + px;
      for (int64_t d = 0; d < D; ++d) img[q * D + d] = acc[p * D + d];
      alpha[q] = accA[p];
      T_final[q] = Tp[p];
    }
}

// Per-thread scratch of the backward pass: per-pixel state of one tile.
template <typename T>
struct BwdScratch {
  std::vector<T> Tc, accd, gaTf, gimg, gcol;
};

// Back-to-front replay of one tile's contribution log (3DGS backward). Writes the gradient row
// [dmean2d(2), dconic(3), dopacity, dcolor(D)] of each of its intersections to buf at the intersection's slot.
template <typename T, int DC>
void backward_tile(const Scene<T>& sc, int64_t tid, const T* T_final, const int32_t* kstart, const TileLog& tl,
                   const Contribution<T>* log, const T* g_img, const T* g_alpha, T* buf, BwdScratch<T>& w) {
  const int64_t D = DC > 0 ? DC : sc.D, S = 6 + D;
  const TileBox b = tile_box(sc.g, tid);
  const int64_t tw = b.width(), npix = b.npix();
  w.Tc.resize(npix);          // transmittance in front of the current Gaussian, recovered back to front
  w.accd.assign(npix, T(0));  // sum over later Gaussians of w_j (c_j . dL/dimg)
  w.gaTf.resize(npix);        // dL/dalpha_img * T_final
  w.gimg.resize(npix * D);
  w.gcol.resize(D);
  T *Tc = w.Tc.data(), *accd = w.accd.data(), *gaTf = w.gaTf.data(), *gimg = w.gimg.data();
  for (int64_t py = b.y0; py < b.y1; ++py)
    for (int64_t px = b.x0; px < b.x1; ++px) {
      const int64_t p = (py - b.y0) * tw + (px - b.x0), q = (b.c * sc.g.H + py) * sc.g.W + px;
      Tc[p] = T_final[q];
      gaTf[p] = g_alpha[q] * T_final[q];
      for (int64_t d = 0; d < D; ++d) gimg[p * D + d] = g_img[q * D + d];
    }
  T gcol_fixed[DC > 0 ? DC : 1];
  T* gcol = DC > 0 ? gcol_fixed : w.gcol.data();
  const Contribution<T>* rec = log + tl.offset;
  const int64_t s = sc.toff[tid];
  int64_t end = tl.records;
  for (int64_t kl = tl.processed - 1; kl >= 0; --kl) {
    const int64_t k = s + kl, begin = kstart[k];
    if (kl >= kPrefetch) sc.prefetch(b.c, k - kPrefetch);
    if (begin == end) continue;  // no contribution (buf rows start at zero)
    const int64_t i = sc.gauss(b.c, k);
    const Splat<T>& sp = sc.splats[i];
    const T* cl = sc.col + D * i;
    T gmx = 0, gmy = 0, ga = 0, gb = 0, gc = 0, go = 0;
    for (int64_t d = 0; d < D; ++d) gcol[d] = T(0);
    for (int64_t r = begin; r < end; ++r) {
      const Contribution<T>& ct = rec[r];
      const int64_t p = int64_t(ct.py) * tw + ct.px;
      const T dx = dyngauss::centre_offset(b.x0 + ct.px, sp.mx), dy = dyngauss::centre_offset(b.y0 + ct.py, sp.my);
      const T G = ct.G, vis = sp.o * G, al = vis > dyngauss::kAlphaMax<T> ? dyngauss::kAlphaMax<T> : vis;
      const T inv_om = T(1) / (T(1) - al), Ti = Tc[p] * inv_om, wt = al * Ti;
      const T* gi = gimg + p * D;
      T cg = 0;
      for (int64_t d = 0; d < D; ++d) {
        cg += cl[d] * gi[d];
        gcol[d] += wt * gi[d];
      }
      // d img / d alpha_i = T_i c_i - (sum_{j>i} w_j c_j) / (1 - alpha_i);
      // d alpha_img / d alpha_i = T_final / (1 - alpha_i)
      const T dal = Ti * cg + (gaTf[p] - accd[p]) * inv_om;
      accd[p] += wt * cg;
      Tc[p] = Ti;
      if (vis <= dyngauss::kAlphaMax<T>) {  // min(0.99, .) passes the gradient only when not clamped
        const T dsig = -dal * vis;
        go += dal * G;
        ga += T(0.5) * dx * dx * dsig;
        gb += dx * dy * dsig;
        gc += T(0.5) * dy * dy * dsig;
        gmx -= (sp.a * dx + sp.b * dy) * dsig;
        gmy -= (sp.c * dy + sp.b * dx) * dsig;
      }
    }
    end = begin;
    T* row = buf + sc.islot[k] * S;
    row[0] = gmx;
    row[1] = gmy;
    row[2] = ga;
    row[3] = gb;
    row[4] = gc;
    row[5] = go;
    for (int64_t d = 0; d < D; ++d) row[6 + d] = gcol[d];
  }
}

// Calls f(std::integral_constant<int, DC>) with DC = D for common channel counts, else DC = 0 (runtime D).
template <typename F>
void with_channels(int64_t D, F&& f) {
  switch (D) {
    case 3: f(std::integral_constant<int, 3>{}); break;  // RGB
    case 4: f(std::integral_constant<int, 4>{}); break;  // RGB + depth
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// Moves a thread's contribution log into a tensor without copying (the tensor owns the vector).
template <typename T>
at::Tensor log_tensor(std::vector<Contribution<T>>* v) {
  if (v->empty()) v->reserve(1);  // a valid data pointer even for an empty log
  const int64_t bytes = int64_t(v->size() * sizeof(Contribution<T>));
  return at::from_blob(v->data(), {bytes}, [v](void*) { delete v; }, at::TensorOptions().dtype(at::kByte));
}

// Forward over all tiles of all cameras (dynamic schedule: tiles differ a lot in cost). Returns one
// contribution-log tensor per thread; kstart and tile_log say where each tile's records are.
template <typename T>
std::vector<at::Tensor> render_all(const Scene<T>& sc, int64_t C, T* img, T* alpha, T* T_final, int32_t* kstart,
                                   TileLog* tile_log, int64_t max_records, bool record) {
  const int nt = num_threads();
  std::vector<std::vector<Contribution<T>>*> logs(nt);
  for (auto& l : logs) {  // reserving address space only: pages are committed as the log fills them
    l = new std::vector<Contribution<T>>();
    if (record) l->reserve(size_t(std::min<int64_t>(max_records, int64_t(1) << 27)));  // beyond: it grows
  }
  with_channels(sc.D, [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
#pragma omp parallel num_threads(nt)
    {
      FwdScratch<T> w;
      w.log = logs[omp_get_thread_num()];
      w.record = record;
#pragma omp for schedule(dynamic, 1)
      for (int64_t tid = 0; tid < C * sc.g.ntiles; ++tid)
        render_tile<T, DC>(sc, tid, img, alpha, T_final, kstart, tile_log[tid], w);
    }
  });
  std::vector<at::Tensor> out;
  for (auto* l : logs) out.push_back(log_tensor(l));
  return out;
}

// Backward over all tiles; each tile writes only its own intersections' rows of buf.
template <typename T>
void backward_all(const Scene<T>& sc, int64_t C, const T* T_final, const int32_t* kstart, const TileLog* tile_log,
                  const std::vector<const Contribution<T>*>& logs, const T* g_img, const T* g_alpha, T* buf) {
  with_channels(sc.D, [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
#pragma omp parallel num_threads(num_threads())
    {
      BwdScratch<T> w;
#pragma omp for schedule(dynamic, 1)
      for (int64_t tid = 0; tid < C * sc.g.ntiles; ++tid) {
        const TileLog& tl = tile_log[tid];
        backward_tile<T, DC>(sc, tid, T_final, kstart, tl, logs[tl.buffer], g_img, g_alpha, buf, w);
      }
    }
  });
}

// Sum each Gaussian's intersection rows (its own contiguous slot range) in a fixed order: deterministic.
template <typename T>
void reduce_slots(const T* buf, const int64_t* goff, int64_t CN, int64_t D, T* gm, T* gc, T* gk, T* go) {
  const int64_t S = 6 + D;
#pragma omp parallel num_threads(num_threads())
  {
    std::vector<T> sum(S);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < CN; ++i) {
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t r = goff[i]; r < goff[i + 1]; ++r)
        for (int64_t j = 0; j < S; ++j) sum[j] += buf[r * S + j];
      gm[2 * i] = sum[0];
      gm[2 * i + 1] = sum[1];
      for (int j = 0; j < 3; ++j) gc[3 * i + j] = sum[2 + j];
      go[i] = sum[5];
      for (int64_t d = 0; d < D; ++d) gk[i * D + d] = sum[6 + d];
    }
  }
}

void check_raster_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                         const at::Tensor& opacities) {
  dyngauss::check_input(means2d, "means2d", 3);
  dyngauss::check_input(conics, "conics", 3);
  dyngauss::check_input(colors, "colors", 3);
  dyngauss::check_input(opacities, "opacities", 2);
  const int64_t C = means2d.size(0), N = means2d.size(1);
  TORCH_CHECK(means2d.size(2) == 2 && conics.size(0) == C && conics.size(1) == N && conics.size(2) == 3 &&
                  colors.size(0) == C && colors.size(1) == N && opacities.size(0) == C && opacities.size(1) == N,
              "expected means2d [C,N,2], conics [C,N,3], colors [C,N,D], opacities [C,N]");
  TORCH_CHECK(N < (int64_t(1) << 31), "too many Gaussians for int32 indices: ", N);
  for (const auto* t : {&conics, &colors, &opacities})
    TORCH_CHECK(t->scalar_type() == means2d.scalar_type(), "all rasterization inputs must share one dtype");
}

// Scene view over contiguous inputs, their packed records and the (saved) tile lists.
template <typename T>
Scene<T> make_scene(const std::vector<Splat<T>>& splats, const at::Tensor& col, const Bins& bins, const Grid& g) {
  return {splats.data(), col.data_ptr<T>(), bins.tile_offsets.data_ptr<int64_t>(), bins.isect_slot.data_ptr<int64_t>(),
          bins.isect_gauss.data_ptr<int32_t>(), col.size(1), col.size(2), g};
}

// Packed records from the inputs and the saved pixel spans.
template <typename T>
std::vector<Splat<T>> splats_of(const at::Tensor& m2, const at::Tensor& con, const at::Tensor& op, const Bins& bins) {
  return make_splats(m2.data_ptr<T>(), con.data_ptr<T>(), op.data_ptr<T>(), bins.spans.data_ptr<int32_t>(),
                     m2.size(0) * m2.size(1));
}

}  // namespace

std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d_, const at::Tensor& conics_, const at::Tensor& colors_,
                                      const at::Tensor& opacities_, const at::Tensor& depths_,
                                      const at::Tensor& extents_, int64_t width, int64_t height, int64_t tile_size,
                                      bool record) {
  check_raster_inputs(means2d_, conics_, colors_, opacities_);
  const auto m2 = means2d_.contiguous(), con = conics_.contiguous(), col = colors_.contiguous();
  const auto op = opacities_.contiguous(), ext = extents_.to(m2.scalar_type()).contiguous();
  const auto dep = depths_.to(m2.scalar_type()).contiguous();
  TORCH_CHECK(dep.numel() == m2.size(0) * m2.size(1) && ext.numel() == m2.size(0) * m2.size(1) * 2,
              "expected depths [C,N] and extents [C,N,2]");
  TORCH_CHECK(tile_size <= 4096, "tile_size must be at most 4096, got ", tile_size);
  const Grid g = make_grid(width, height, tile_size);
  const int64_t C = m2.size(0), N = m2.size(1), D = col.size(2);
  const auto opt = m2.options();
  auto img = at::empty({C, height, width, D}, opt), alpha = at::empty({C, height, width, 1}, opt);
  auto T_final = at::empty({C, height, width}, opt);
  auto tile_log = at::empty({C * g.ntiles, 4}, at::kLong);
  Bins bins;
  at::Tensor kstart;
  std::vector<at::Tensor> logs;
  AT_DISPATCH_FLOATING_TYPES(m2.scalar_type(), "rasterize_fwd", [&] {
    bins = bin_gaussians(m2.data_ptr<scalar_t>(), ext.data_ptr<scalar_t>(), dep.data_ptr<scalar_t>(), C, N, g);
    kstart = at::empty({bins.isect_gauss.numel()}, at::kInt);
    const auto splats = splats_of<scalar_t>(m2, con, op, bins);
    logs = render_all(make_scene<scalar_t>(splats, col, bins, g), C, img.data_ptr<scalar_t>(),
                      alpha.data_ptr<scalar_t>(), T_final.data_ptr<scalar_t>(), kstart.data_ptr<int32_t>(),
                      reinterpret_cast<TileLog*>(tile_log.data_ptr<int64_t>()), bins.pixels, record);
  });
  std::vector<at::Tensor> out = {img, alpha, T_final, bins.spans, bins.tile_offsets, bins.isect_gauss,
                                 bins.isect_slot, bins.gauss_offsets, kstart, tile_log};
  out.insert(out.end(), logs.begin(), logs.end());
  return out;
}

std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d_, const at::Tensor& conics_, const at::Tensor& colors_,
                                      const at::Tensor& opacities_, int64_t width, int64_t height, int64_t tile_size,
                                      at::TensorList state, const at::Tensor& g_image_, const at::Tensor& g_alpha_) {
  TORCH_CHECK(state.size() >= 8, "rasterize_bwd: expected the state returned by rasterize_fwd");
  const at::Tensor& spans = state[1];
  const Bins bins{spans.contiguous(), state[2].contiguous(), state[3].contiguous(), state[4].contiguous(),
                  state[5].contiguous()};
  const at::Tensor T_final = state[0].contiguous(), kstart = state[6].contiguous(), tile_log = state[7].contiguous();
  check_raster_inputs(means2d_, conics_, colors_, opacities_);
  const auto m2 = means2d_.contiguous(), con = conics_.contiguous(), col = colors_.contiguous();
  const auto op = opacities_.contiguous();
  const auto dt = m2.scalar_type();
  const auto g_image = g_image_.to(dt).contiguous(), g_alpha = g_alpha_.to(dt).contiguous();
  const Grid g = make_grid(width, height, tile_size);
  const int64_t C = m2.size(0), N = m2.size(1), D = col.size(2);
  TORCH_CHECK(g_image.numel() == C * height * width * D && g_alpha.numel() == C * height * width,
              "rasterize_bwd: gradient shapes do not match the image");
  TORCH_CHECK(bins.tile_offsets.numel() == C * g.ntiles + 1 && bins.gauss_offsets.numel() == C * N + 1 &&
                  spans.numel() == C * N * 4 && T_final.numel() == C * height * width &&
                  tile_log.numel() == C * g.ntiles * 4 && kstart.numel() == bins.isect_gauss.numel(),
              "rasterize_bwd: saved state does not match the inputs");
  auto buf = at::zeros({bins.isect_gauss.numel(), 6 + D}, m2.options());
  auto g_m2 = at::empty_like(m2), g_con = at::empty_like(con), g_col = at::empty_like(col);
  auto g_op = at::empty_like(op);
  AT_DISPATCH_FLOATING_TYPES(dt, "rasterize_bwd", [&] {
    using T = scalar_t;
    std::vector<const Contribution<T>*> logs;
    for (size_t j = 8; j < state.size(); ++j)
      logs.push_back(reinterpret_cast<const Contribution<T>*>(state[j].data_ptr<uint8_t>()));
    const auto splats = splats_of<T>(m2, con, op, bins);
    backward_all(make_scene<T>(splats, col, bins, g), C, T_final.data_ptr<T>(), kstart.data_ptr<int32_t>(),
                 reinterpret_cast<const TileLog*>(tile_log.data_ptr<int64_t>()), logs, g_image.data_ptr<T>(),
                 g_alpha.data_ptr<T>(), buf.data_ptr<T>());
    reduce_slots(buf.data_ptr<T>(), bins.gauss_offsets.data_ptr<int64_t>(), C * N, D, g_m2.data_ptr<T>(),
                 g_con.data_ptr<T>(), g_col.data_ptr<T>(), g_op.data_ptr<T>());
  });
  return {g_m2, g_con, g_col, g_op};
}
