// EWA projection of 3D Gaussians into pinhole cameras, forward and exact backward.
// Mirrors project_gaussians() in dyngauss/render/torch_reference.py, including its culling, the
// 1.3x-FOV clamp of the Jacobian and the placeholder values (zs = 1, det = 1) of culled entries.
#include "common.h"

namespace {

using dyngauss::num_threads;

// One camera: world-to-camera rotation/translation, intrinsics and the Jacobian clamp limits.
template <typename T>
struct Cam {
  T R[9], t[3], fx, fy, cx, cy, lim_xp, lim_xn, lim_yp, lim_yn, width, height;
};

template <typename T>
Cam<T> load_camera(const T* V, const T* K, int64_t width, int64_t height) {
  Cam<T> c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) c.R[3 * i + j] = V[4 * i + j];
    c.t[i] = V[4 * i + 3];
  }
  c.fx = K[0];
  c.fy = K[4];
  c.cx = K[2];
  c.cy = K[5];
  c.width = T(width);
  c.height = T(height);
  const T tan_x = T(0.5 * double(width)) / c.fx, tan_y = T(0.5 * double(height)) / c.fy;
  c.lim_xp = (c.width - c.cx) / c.fx + T(0.3) * tan_x;
  c.lim_xn = c.cx / c.fx + T(0.3) * tan_x;
  c.lim_yp = (c.height - c.cy) / c.fy + T(0.3) * tan_y;
  c.lim_yn = c.cy / c.fy + T(0.3) * tan_y;
  return c;
}

// Per-Gaussian, camera-independent part: normalised quaternion, R(q), M = R diag(s), Sigma = M M^T.
template <typename T>
struct Shape {
  T q[4], norm, Rq[9], M[9], Sig[9];
};

template <typename T>
void make_shape(const T* quat, const T* scale, Shape<T>& s) {
  const T n = std::sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  s.norm = n;
  const T nc = n < T(1e-12) ? T(1e-12) : n;  // quat_normalize clamps the norm at 1e-12
  for (int i = 0; i < 4; ++i) s.q[i] = quat[i] / nc;
  const T w = s.q[0], x = s.q[1], y = s.q[2], z = s.q[3];
  const T R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                  2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                  2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)};
  for (int i = 0; i < 9; ++i) {
    s.Rq[i] = R[i];
    s.M[i] = R[i] * scale[i % 3];
  }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      s.Sig[3 * i + j] = s.M[3 * i] * s.M[3 * j] + s.M[3 * i + 1] * s.M[3 * j + 1] + s.M[3 * i + 2] * s.M[3 * j + 2];
}

// Everything the projection of one Gaussian into one camera computes (kept for the backward pass).
template <typename T>
struct Proj {
  T p[3], zs, u, v, ux, uy, J00, J02, J11, J12, Tm[6], a, b, c, det;
  bool zvalid, valid_det, valid;
  T means2d[2], conic[3], ext[2], depth;
};

template <typename T>
inline T quad(const T* x, const T* S, const T* y) {  // x^T S y for 3-vectors, S 3x3 row-major
  T r = 0;
  for (int i = 0; i < 3; ++i) r += x[i] * (S[3 * i] * y[0] + S[3 * i + 1] * y[1] + S[3 * i + 2] * y[2]);
  return r;
}

template <typename T>
void project_one(const Cam<T>& cam, const T* mu, const Shape<T>& s, T eps2d, T near_plane, T far_plane, Proj<T>& o) {
  for (int i = 0; i < 3; ++i)
    o.p[i] = cam.R[3 * i] * mu[0] + cam.R[3 * i + 1] * mu[1] + cam.R[3 * i + 2] * mu[2] + cam.t[i];
  const T x = o.p[0], y = o.p[1], z = o.p[2];
  o.zvalid = (z > near_plane) && (z < far_plane);
  o.zs = o.zvalid ? z : T(1);
  const T zs = o.zs;
  o.u = x / zs;
  o.v = y / zs;
  o.ux = std::min(std::max(o.u, -cam.lim_xn), cam.lim_xp);
  o.uy = std::min(std::max(o.v, -cam.lim_yn), cam.lim_yp);
  const T tx = zs * o.ux, ty = zs * o.uy;
  o.J00 = cam.fx / zs;
  o.J11 = cam.fy / zs;
  o.J02 = -cam.fx * tx / (zs * zs);
  o.J12 = -cam.fy * ty / (zs * zs);
  for (int j = 0; j < 3; ++j) {  // T = J R (2x3): cov2d = T Sigma T^T
    o.Tm[j] = o.J00 * cam.R[j] + o.J02 * cam.R[6 + j];
    o.Tm[3 + j] = o.J11 * cam.R[3 + j] + o.J12 * cam.R[6 + j];
  }
  o.a = quad(o.Tm, s.Sig, o.Tm) + eps2d;
  o.b = quad(o.Tm, s.Sig, o.Tm + 3);
  o.c = quad(o.Tm + 3, s.Sig, o.Tm + 3) + eps2d;
  o.det = o.a * o.c - o.b * o.b;
  o.valid_det = o.zvalid && (o.det > T(0));
  const T det_s = o.valid_det ? o.det : T(1);
  o.conic[0] = o.c / det_s;
  o.conic[1] = -o.b / det_s;
  o.conic[2] = o.a / det_s;
  o.means2d[0] = cam.fx * x / zs + cam.cx;
  o.means2d[1] = cam.fy * y / zs + cam.cy;
  const T ex = T(3) * std::sqrt(std::max(o.a, T(0))), ey = T(3) * std::sqrt(std::max(o.c, T(0)));
  const bool onscreen = (o.means2d[0] + ex > T(0)) && (o.means2d[0] - ex < cam.width) &&
                        (o.means2d[1] + ey > T(0)) && (o.means2d[1] - ey < cam.height);
  o.valid = o.valid_det && onscreen;
  o.ext[0] = o.valid ? ex : T(0);
  o.ext[1] = o.valid ? ey : T(0);
  o.depth = o.valid ? z : T(0);
}

// d max(u, lo) / du and d min(m, hi) / dm with torch's convention (half the gradient on ties).
template <typename T>
inline T clamp_grad(T u, T lo, T hi) {
  const T m = std::max(u, lo);
  const T gmin = m < hi ? T(1) : (m == hi ? T(0.5) : T(0));
  const T gmax = u > lo ? T(1) : (u == lo ? T(0.5) : T(0));
  return gmin * gmax;
}

// Backward of project_one: accumulates dL/dmu (world), dL/dSigma (3x3) and dL/d[R|t] (3x4, row-major)
// from the output gradients.
template <typename T>
void project_one_bwd(const Cam<T>& cam, const T* mu, const Shape<T>& s, const Proj<T>& o, const T* g_m2,
                     const T* g_con, T g_depth, T* g_mu, T* g_Sig, T* g_Rt) {
  const T x = o.p[0], y = o.p[1], zs = o.zs, zs2 = zs * zs;
  T gx = 0, gy = 0, gz = o.valid ? g_depth : T(0), gzs = 0;
  // means2d = (fx x / zs + cx, fy y / zs + cy)
  gx += g_m2[0] * cam.fx / zs;
  gy += g_m2[1] * cam.fy / zs;
  gzs -= (g_m2[0] * cam.fx * x + g_m2[1] * cam.fy * y) / zs2;
  // conic = (c, -b, a) / det_s
  T ga, gb, gc;
  if (o.valid_det) {
    const T a = o.a, b = o.b, c = o.c, id2 = T(1) / (o.det * o.det);
    ga = (-g_con[0] * c * c + g_con[1] * b * c - g_con[2] * b * b) * id2;
    gb = (T(2) * g_con[0] * b * c - g_con[1] * (a * c + b * b) + T(2) * g_con[2] * a * b) * id2;
    gc = (-g_con[0] * b * b + g_con[1] * a * b - g_con[2] * a * a) * id2;
  } else {
    ga = g_con[2];
    gb = -g_con[1];
    gc = g_con[0];
  }
  // a = T0 S T0 + eps, b = T0 S T1, c = T1 S T1 + eps
  const T* T0 = o.Tm;
  const T* T1 = o.Tm + 3;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      g_Sig[3 * i + j] += ga * T0[i] * T0[j] + T(0.5) * gb * (T0[i] * T1[j] + T1[i] * T0[j]) + gc * T1[i] * T1[j];
  T gT0[3], gT1[3];
  for (int i = 0; i < 3; ++i) {
    const T ST0 = s.Sig[3 * i] * T0[0] + s.Sig[3 * i + 1] * T0[1] + s.Sig[3 * i + 2] * T0[2];
    const T ST1 = s.Sig[3 * i] * T1[0] + s.Sig[3 * i + 1] * T1[1] + s.Sig[3 * i + 2] * T1[2];
    gT0[i] = T(2) * ga * ST0 + gb * ST1;
    gT1[i] = gb * ST0 + T(2) * gc * ST1;
  }
  // T = J R
  for (int j = 0; j < 3; ++j) {
    g_Rt[j] += gT0[j] * o.J00;
    g_Rt[4 + j] += gT1[j] * o.J11;
    g_Rt[8 + j] += gT0[j] * o.J02 + gT1[j] * o.J12;
  }
  T gJ00 = 0, gJ02 = 0, gJ11 = 0, gJ12 = 0;
  for (int j = 0; j < 3; ++j) {
    gJ00 += gT0[j] * cam.R[j];
    gJ02 += gT0[j] * cam.R[6 + j];
    gJ11 += gT1[j] * cam.R[3 + j];
    gJ12 += gT1[j] * cam.R[6 + j];
  }
  // J00 = fx / zs, J02 = -fx tx / zs^2 with tx = zs ux, ux = clamp(x / zs) (same for y)
  const T tx = zs * o.ux, ty = zs * o.uy;
  gzs -= (gJ00 * cam.fx + gJ11 * cam.fy) / zs2;
  const T gtx = -gJ02 * cam.fx / zs2, gty = -gJ12 * cam.fy / zs2;
  gzs += T(2) * (gJ02 * cam.fx * tx + gJ12 * cam.fy * ty) / (zs2 * zs);
  gzs += gtx * o.ux + gty * o.uy;
  const T gu = gtx * zs * clamp_grad(o.u, -cam.lim_xn, cam.lim_xp);
  const T gv = gty * zs * clamp_grad(o.v, -cam.lim_yn, cam.lim_yp);
  gx += gu / zs;
  gy += gv / zs;
  gzs -= (gu * x + gv * y) / zs2;
  if (o.zvalid) gz += gzs;
  // p = R mu + t
  for (int j = 0; j < 3; ++j) g_mu[j] += cam.R[j] * gx + cam.R[3 + j] * gy + cam.R[6 + j] * gz;
  const T gp[3] = {gx, gy, gz};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) g_Rt[4 * i + j] += gp[i] * mu[j];
    g_Rt[4 * i + 3] += gp[i];
  }
}

// Backward of make_shape: dL/dSigma -> dL/dquat (through the normalisation), dL/dscale.
template <typename T>
void shape_bwd(const Shape<T>& s, const T* scale, const T* g_Sig, T* g_quat, T* g_scale) {
  T gM[9], G[9];
  for (int i = 0; i < 3; ++i)  // Sigma = M M^T: dM = (gS + gS^T) M
    for (int j = 0; j < 3; ++j) {
      T acc = 0;
      for (int k = 0; k < 3; ++k) acc += (g_Sig[3 * i + k] + g_Sig[3 * k + i]) * s.M[3 * k + j];
      gM[3 * i + j] = acc;
    }
  for (int j = 0; j < 3; ++j) g_scale[j] = gM[j] * s.Rq[j] + gM[3 + j] * s.Rq[3 + j] + gM[6 + j] * s.Rq[6 + j];
  for (int i = 0; i < 9; ++i) G[i] = gM[i] * scale[i % 3];
  const T w = s.q[0], x = s.q[1], y = s.q[2], z = s.q[3];
  T gq[4];
  gq[0] = 2 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
  gq[1] = 2 * (y * G[1] + z * G[2] + y * G[3] - 2 * x * G[4] - w * G[5] + z * G[6] + w * G[7] - 2 * x * G[8]);
  gq[2] = 2 * (-2 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] - 2 * y * G[8]);
  gq[3] = 2 * (-2 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2 * z * G[4] + y * G[5] + x * G[6] + y * G[7]);
  if (s.norm >= T(1e-12)) {  // q / |q|: (I - qn qn^T) / |q|
    const T dot = gq[0] * w + gq[1] * x + gq[2] * y + gq[3] * z;
    for (int i = 0; i < 4; ++i) g_quat[i] = (gq[i] - s.q[i] * dot) / s.norm;
  } else {  // the clamp is active: q / 1e-12
    for (int i = 0; i < 4; ++i) g_quat[i] = gq[i] / T(1e-12);
  }
}

void check_project_inputs(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                          const at::Tensor& viewmats, const at::Tensor& Ks) {
  dyngauss::check_input(means, "means", 2);
  dyngauss::check_input(quats, "quats", 2);
  dyngauss::check_input(scales, "scales", 2);
  dyngauss::check_input(viewmats, "viewmats", 3);
  dyngauss::check_input(Ks, "Ks", 3);
  const int64_t N = means.size(0);
  TORCH_CHECK(means.size(1) == 3 && quats.size(0) == N && quats.size(1) == 4 && scales.size(0) == N &&
                  scales.size(1) == 3,
              "expected means [N,3], quats [N,4], scales [N,3]");
  TORCH_CHECK(viewmats.size(1) == 4 && viewmats.size(2) == 4 && Ks.size(0) == viewmats.size(0) &&
                  Ks.size(1) == 3 && Ks.size(2) == 3,
              "expected viewmats [C,4,4] and Ks [C,3,3]");
  for (const auto* t : {&quats, &scales, &viewmats, &Ks})
    TORCH_CHECK(t->scalar_type() == means.scalar_type(), "all projection inputs must share one dtype");
}

// Cameras of the batch, in the working precision.
template <typename T>
std::vector<Cam<T>> load_cameras(const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width, int64_t height) {
  std::vector<Cam<T>> cams;
  for (int64_t c = 0; c < viewmats.size(0); ++c)
    cams.push_back(load_camera(viewmats.data_ptr<T>() + 16 * c, Ks.data_ptr<T>() + 9 * c, width, height));
  return cams;
}

// Forward over all (camera, Gaussian) pairs, parallel over Gaussians.
template <typename T>
void project_fwd_impl(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                      const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width, int64_t height, double eps2d,
                      double near_plane, double far_plane, at::Tensor& means2d, at::Tensor& conics,
                      at::Tensor& depths, at::Tensor& extents, at::Tensor& radii) {
  const int64_t N = means.size(0), C = viewmats.size(0);
  const std::vector<Cam<T>> cams = load_cameras<T>(viewmats, Ks, width, height);
  const T *mu = means.data_ptr<T>(), *q = quats.data_ptr<T>(), *sc = scales.data_ptr<T>();
  T *m2 = means2d.data_ptr<T>(), *con = conics.data_ptr<T>(), *dep = depths.data_ptr<T>();
  T* ext = extents.data_ptr<T>();
  int32_t* rad = radii.data_ptr<int32_t>();
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t g = 0; g < N; ++g) {
    Shape<T> s;
    make_shape(q + 4 * g, sc + 3 * g, s);
    for (int64_t c = 0; c < C; ++c) {
      Proj<T> o;
      project_one(cams[c], mu + 3 * g, s, T(eps2d), T(near_plane), T(far_plane), o);
      const int64_t i = c * N + g;
      m2[2 * i] = o.means2d[0];
      m2[2 * i + 1] = o.means2d[1];
      for (int k = 0; k < 3; ++k) con[3 * i + k] = o.conic[k];
      dep[i] = o.depth;
      for (int k = 0; k < 2; ++k) {
        ext[2 * i + k] = o.ext[k];
        rad[2 * i + k] = int32_t(std::min(std::ceil(double(o.ext[k])), 2147483647.0));
      }
    }
  }
}

// Backward over all (camera, Gaussian) pairs. Each thread owns whole Gaussians, so per-Gaussian gradients
// need no synchronisation; camera gradients are summed per fixed block of Gaussians, then over blocks in
// order, so the result does not depend on the thread count.
template <typename T>
void project_bwd_impl(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                      const at::Tensor& viewmats, const at::Tensor& Ks, int64_t width, int64_t height, double eps2d,
                      double near_plane, double far_plane, const at::Tensor& g_means2d, const at::Tensor& g_conics,
                      const at::Tensor& g_depths, at::Tensor& g_means, at::Tensor& g_quats, at::Tensor& g_scales,
                      at::Tensor& g_viewmats) {
  constexpr int64_t kBlock = 1024;
  const int64_t N = means.size(0), C = viewmats.size(0), nblocks = (N + kBlock - 1) / kBlock;
  const std::vector<Cam<T>> cams = load_cameras<T>(viewmats, Ks, width, height);
  const T *mu = means.data_ptr<T>(), *q = quats.data_ptr<T>(), *sc = scales.data_ptr<T>();
  const T *gm2 = g_means2d.data_ptr<T>(), *gcon = g_conics.data_ptr<T>(), *gdep = g_depths.data_ptr<T>();
  T *gmu = g_means.data_ptr<T>(), *gq = g_quats.data_ptr<T>(), *gs = g_scales.data_ptr<T>();
  std::vector<T> g_Rt(std::max<int64_t>(1, nblocks * C * 12), T(0));  // per block and camera: d[R|t]
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    for (int64_t g = blk * kBlock; g < std::min(N, (blk + 1) * kBlock); ++g) {
      Shape<T> s;
      make_shape(q + 4 * g, sc + 3 * g, s);
      T gSig[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t c = 0; c < C; ++c) {
        Proj<T> o;
        project_one(cams[c], mu + 3 * g, s, T(eps2d), T(near_plane), T(far_plane), o);
        const int64_t i = c * N + g;
        project_one_bwd(cams[c], mu + 3 * g, s, o, gm2 + 2 * i, gcon + 3 * i, gdep[i], gmu + 3 * g, gSig,
                        g_Rt.data() + (blk * C + c) * 12);
      }
      shape_bwd(s, sc + 3 * g, gSig, gq + 4 * g, gs + 3 * g);
    }
  }
  T* gV = g_viewmats.data_ptr<T>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t blk = 0; blk < nblocks; ++blk)
      for (int k = 0; k < 12; ++k) gV[16 * c + k] += g_Rt[(blk * C + c) * 12 + k];
}

}  // namespace

std::vector<at::Tensor> project_fwd(const at::Tensor& means_, const at::Tensor& quats_, const at::Tensor& scales_,
                                    const at::Tensor& viewmats_, const at::Tensor& Ks_, int64_t width,
                                    int64_t height, double eps2d, double near_plane, double far_plane) {
  check_project_inputs(means_, quats_, scales_, viewmats_, Ks_);
  const auto means = means_.contiguous(), quats = quats_.contiguous(), scales = scales_.contiguous();
  const auto viewmats = viewmats_.contiguous(), Ks = Ks_.contiguous();
  const int64_t N = means.size(0), C = viewmats.size(0);
  const auto opt = means.options();
  auto means2d = at::empty({C, N, 2}, opt), conics = at::empty({C, N, 3}, opt), depths = at::empty({C, N}, opt);
  auto extents = at::empty({C, N, 2}, opt);
  auto radii = at::empty({C, N, 2}, opt.dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
    project_fwd_impl<scalar_t>(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                               means2d, conics, depths, extents, radii);
  });
  return {means2d, conics, depths, extents, radii};
}

std::vector<at::Tensor> project_bwd(const at::Tensor& means_, const at::Tensor& quats_, const at::Tensor& scales_,
                                    const at::Tensor& viewmats_, const at::Tensor& Ks_, int64_t width,
                                    int64_t height, double eps2d, double near_plane, double far_plane,
                                    const at::Tensor& g_means2d_, const at::Tensor& g_conics_,
                                    const at::Tensor& g_depths_) {
  check_project_inputs(means_, quats_, scales_, viewmats_, Ks_);
  const auto means = means_.contiguous(), quats = quats_.contiguous(), scales = scales_.contiguous();
  const auto viewmats = viewmats_.contiguous(), Ks = Ks_.contiguous();
  const int64_t N = means.size(0), C = viewmats.size(0);
  const auto dt = means.scalar_type();
  const auto g_means2d = g_means2d_.to(dt).contiguous(), g_conics = g_conics_.to(dt).contiguous();
  const auto g_depths = g_depths_.to(dt).contiguous();
  TORCH_CHECK(g_means2d.numel() == C * N * 2 && g_conics.numel() == C * N * 3 && g_depths.numel() == C * N,
              "project_bwd: gradient shapes do not match [C,N,...]");
  auto g_means = at::zeros_like(means), g_quats = at::zeros_like(quats), g_scales = at::zeros_like(scales);
  auto g_viewmats = at::zeros_like(viewmats);
  AT_DISPATCH_FLOATING_TYPES(dt, "project_bwd", [&] {
    project_bwd_impl<scalar_t>(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                               g_means2d, g_conics, g_depths, g_means, g_quats, g_scales, g_viewmats);
  });
  return {g_means, g_quats, g_scales, g_viewmats};
}
