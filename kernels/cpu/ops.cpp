// Registers the kernels as torch operators torch.ops.<TORCH_EXTENSION_NAME>.* (loaded by
// dyngauss/render/cpu_backend.py). The namespace is the build name, which carries a hash of the sources, so
// an edited kernel can be loaded next to an older one in the same process.
#include <torch/library.h>

#include "common.h"

#define DYNGAUSS_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)  // expands TORCH_EXTENSION_NAME before pasting

DYNGAUSS_LIBRARY(TORCH_EXTENSION_NAME, m) {
  m.def("project_fwd", &project_fwd);      // -> means2d, conics, depths, extents, radii
  m.def("project_bwd", &project_bwd);      // -> d_means, d_quats, d_scales, d_viewmats
  m.def("rasterize_fwd", &rasterize_fwd);  // -> image, alpha, then the state the backward needs (T_final,
                                           //    spans, tile lists, contribution logs when `record`)
  m.def("rasterize_bwd", &rasterize_bwd);  // -> d_means2d, d_conics, d_colors, d_opacities
}
