// Shared helpers of the dyngauss CPU rasterizer (projection + tile rasterization, forward and backward).
// Semantics follow dyngauss/render/torch_reference.py exactly; see that file for the specification.
#pragma once

// Narrow ATen includes (not <ATen/ATen.h> / <torch/extension.h>): they keep the JIT build short.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace dyngauss {

// Compositing constants of the reference (ALPHA_MIN, ALPHA_MAX, T_MIN), cast to the working precision.
template <typename T> constexpr T kAlphaMin = T(1.0 / 255.0);
template <typename T> constexpr T kAlphaMax = T(0.99);
template <typename T> constexpr T kTMin = T(1e-4);

// Threads to use: follows torch.set_num_threads so benchmarks and callers control both the same way.
inline int num_threads() { return std::max(1, at::get_num_threads()); }

// Raise a clear error unless `t` is a CPU tensor of the expected rank.
inline void check_input(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
}

// Offset of the centre of pixel i (at i + 0.5) from a mean coordinate m, computed the same way everywhere.
template <typename T>
inline T centre_offset(int64_t i, T m) {
  return (T(i) + T(0.5)) - m;
}

// Inclusive range of pixel indices in [0, n) whose centres lie within m +- e, i.e. |centre_offset| <= e
// exactly as the reference tests it (the test is monotone in i, so the range is an interval).
// Empty when lo > hi.
template <typename T>
inline void pixel_span(T m, T e, int64_t n, int64_t& lo, int64_t& hi) {
  double a = std::floor(double(m) - double(e) - 0.5), b = std::ceil(double(m) + double(e) - 0.5);
  if (!(a == a) || !(b == b)) {  // NaN: touch nothing
    lo = 1;
    hi = 0;
    return;
  }
  // a superset by at most a pixel on each side (clamped before the cast), then trimmed with the exact test
  lo = std::max<int64_t>(0, int64_t(std::min(std::max(a, -1.0), double(n))));
  hi = std::min<int64_t>(n - 1, int64_t(std::min(std::max(b, -1.0), double(n))));
  while (lo <= hi && !(std::abs(centre_offset(lo, m)) <= e)) ++lo;
  while (hi >= lo && !(std::abs(centre_offset(hi, m)) <= e)) --hi;
}

// One projected Gaussian as the tile loops read it, packed into one record (one cache line for float) so a
// tile visiting Gaussians in depth order misses the cache once per Gaussian, not once per input array.
// Pixels inside its extent box are exactly [x0,x1] x [y0,y1] (see pixel_span); there
// sigma = 0.5 (a dx^2 + c dy^2) + b dx dy, G = exp(-sigma), vis = o G, alpha = min(0.99, vis).
// Forward and backward both call alpha_at, so they make identical decisions.
template <typename T>
struct alignas(64) Splat {
  T mx, my, a, b, c, o;
  T sigma_max;  // sigma above which alpha < 1/255 for sure (skips exp); a safe margin keeps results exact
  int32_t x0, x1, y0, y1;

  Splat() = default;
  Splat(const T* mu, const T* con, T op, const int32_t* span)
      : mx(mu[0]), my(mu[1]), a(con[0]), b(con[1]), c(con[2]), o(op),
        x0(span[0]), x1(span[1]), y0(span[2]), y1(span[3]) {
    sigma_max = op > T(0) ? T(std::log(255.0 * double(op)) + 1e-3) : T(-1);
  }

  // False when the Gaussian does not contribute at offset (dx, dy) (sigma < 0 or alpha < 1/255).
  inline bool alpha_at(T dx, T dy, T& G, T& vis, T& alpha) const {
    const T sigma = T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
    if (!(sigma >= T(0)) || sigma > sigma_max) return false;
    G = std::exp(-sigma);
    vis = o * G;
    alpha = vis > kAlphaMax<T> ? kAlphaMax<T> : vis;
    return alpha >= kAlphaMin<T>;
  }
};

}  // namespace dyngauss

// Entry points (defined in project.cpp / rasterize.cpp, registered as torch ops in ops.cpp).
std::vector<at::Tensor> project_fwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                    const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                    int64_t height, double eps2d, double near_plane, double far_plane);
std::vector<at::Tensor> project_bwd(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                                    const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width,
                                    int64_t height, double eps2d, double near_plane, double far_plane,
                                    const at::Tensor& g_means2d, const at::Tensor& g_conics,
                                    const at::Tensor& g_depths);
std::vector<at::Tensor> rasterize_fwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, const at::Tensor& depths,
                                      const at::Tensor& extents, int64_t width, int64_t height, int64_t tile_size,
                                      bool record);
std::vector<at::Tensor> rasterize_bwd(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                                      const at::Tensor& opacities, int64_t width, int64_t height, int64_t tile_size,
                                      at::TensorList state, const at::Tensor& g_image, const at::Tensor& g_alpha);
