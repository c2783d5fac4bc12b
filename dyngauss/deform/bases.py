"""Motion bases (Shape of Motion: Wang et al., "Shape of Motion: 4D Reconstruction from a Single Video",
2024), `deform.kind=bases`.

A small set of K rigid trajectories is shared by all Gaussians; every Gaussian blends them with weights of its
own. Low rank is the prior: a piecewise-rigid or smoothly bending scene needs few trajectories, and a texture
cannot slide over a surface unless a basis carries it.

In the scene's frame (centre c, radius r, axes Q: :meth:`BasesField.set_world_frame`; u = Q^T (x - c) / r):

* basis k at time t is the rigid map u -> R_k(t) (u - p_k) + p_k + τ_k(t): a rotation about its pivot p_k (fixed,
  in scene radii) and a translation, with
  ω_k(t) = Σ_j a_kj cos(π j t) (rotation vector, radians; R_k = exp(ω_k)) and
  τ_k(t) = Σ_j b_kj cos(π j t) (scene radii), j = 0 .. J-1 (a cosine series in t in [0, 1], smooth by
  construction, defined at every t: test and video times between training frames need no interpolation rule).
  Shape of Motion keeps one SE(3) per basis per frame and relies on 2D tracks and depth for smoothness; without
  them a monocular frame constrains its own table entries from one view, so the series is the better prior here.
* Gaussian i has weights w_i = softmax(logits_i) over the K bases. Its centre moves by linear blend skinning,
  u' = Σ_k w_ik (R_k (u - p_k) + p_k + τ_k), and its orientation by the blended rotation orthonormalised
  (Gram-Schmidt of the first two columns of Σ_k w_ik R_k: Shape of Motion's continuous 6D blend; Zhou et al.,
  CVPR 2019).

All coefficients start at 0 (the identity at every t). The pivots and the initial weights come from the canonical
Gaussians at the first call with N > 0 of them: p = a farthest-point sample of K centres, logits_ik =
-|u_i - p_k|^2 / (2 σ^2) with σ the mean distance from a pivot to its nearest other pivot, a soft partition of
space (Shape of Motion initialises by clustering 3D tracks; without lifted tracks space is the cue we have).

Rows follow the Gaussians as in deform/tracking.py: the logits have one row per canonical Gaussian and
:meth:`BasesField.remap_gaussians` copies a parent's row (and its Adam moments) to its clones / split children.
The field only moves its own Gaussians: motion.cycle_weight / elastic_weight / background_weight must be 0 with
it (Config.RULES). Settings: :class:`~dyngauss.deform.config.BasesFieldConfig`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..geometry.quaternion import matrix_to_quat
from ..geometry.so3 import so3_exp_matrix
from .base import DeformField, Motion, checked_parents, checked_world_frame
from .tracking import _swap_in_optimizer

__all__ = ["BasesField", "gram_schmidt_rotation", "cosine_series"]


def cosine_series(t: torch.Tensor, num_terms: int) -> torch.Tensor:
    """cos(π j t) for j = 0 .. num_terms-1: [..., J] for times t [...] (in [0, 1])."""
    j = torch.arange(num_terms, dtype=t.dtype, device=t.device)
    return torch.cos(math.pi * t[..., None] * j)


def gram_schmidt_rotation(M: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The rotation [...,3,3] whose first two columns are the Gram-Schmidt orthonormalisation of M's first two
    columns (M [...,3,3], e.g. a weighted sum of rotations; Zhou et al. 2019). Exact for a rotation M."""
    a1, a2 = M[..., :, 0], M[..., :, 1]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(eps)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True).clamp_min(eps)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


class BasesField(DeformField):
    """K shared rigid trajectories blended per Gaussian (module docstring).

    Args:
        num_bases: K >= 1.
        time_terms: J >= 1 cosine terms per trajectory coordinate.
        weight_lr_mult: the logits' learning rate as a multiple of the coefficients' (:meth:`param_groups`).
    Raises ValueError for K < 1 or J < 1.
    """

    kind = "bases"

    def __init__(self, num_bases: int, time_terms: int, weight_lr_mult: float = 1.0):
        super().__init__()
        if int(num_bases) < 1 or int(time_terms) < 1:
            raise ValueError(f"deform.kind=bases needs num_bases >= 1 and time_freqs >= 1, got {num_bases}, "
                             f"{time_terms}")
        K, J = int(num_bases), int(time_terms)
        self.weight_lr_mult = float(weight_lr_mult)
        self.coef = nn.Parameter(torch.zeros(K, J, 6))       # (rotation vector, translation) series per basis
        self.logits = nn.Parameter(torch.zeros(0, K))         # per-Gaussian blend logits, rows made at first use
        self.register_buffer("pivots", torch.zeros(K, 3))     # in scene radii
        self.register_buffer("world_center", torch.zeros(3))
        self.register_buffer("world_radius", torch.ones(()))
        self.register_buffer("world_rotation", torch.eye(3))

    # ---- state ---------------------------------------------------------------------------------
    @property
    def num_bases(self) -> int:
        return int(self.coef.shape[0])

    @property
    def num_gaussians(self) -> int:
        """Rows of the logits (0 before the first call)."""
        return int(self.logits.shape[0])

    def weights(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Blend weights [A,K] (softmax of the logits) of the rows `rows` (all when None)."""
        lg = self.logits if rows is None else self.logits.index_select(0, rows)
        return torch.softmax(lg, -1)

    @torch.no_grad()
    def set_world_frame(self, center, radius: float, rotation=None) -> None:
        """The scene's centre c [3], radius r > 0 and axes Q [3,3] (a rotation; default identity): the bases live
        in u = Q^T (x - c) / r. Raises ValueError for a non-finite centre, a radius that is not positive and finite
        or a Q that is no rotation."""
        c, r, Q = checked_world_frame(center, radius, rotation, self.world_center.dtype)
        self.world_center.copy_(c)
        self.world_radius.fill_(r)
        self.world_rotation.copy_(Q.to(self.world_rotation.dtype))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """World positions [...,3] -> scene units Q^T (x - c) / r."""
        return ((x - self.world_center.to(x.dtype)) @ self.world_rotation.to(x.dtype)) / self.world_radius.to(x.dtype)

    @torch.no_grad()
    def init_gaussians(self, means: torch.Tensor) -> None:
        """Pivots and initial logits from the canonical centres means [N,3] (module docstring), when there are no
        rows yet. Raises ValueError when rows for another N exist."""
        from ..geometry.knn import farthest_point_sample

        n = int(means.shape[0])
        if self.num_gaussians == n:
            return
        if self.num_gaussians != 0:
            raise ValueError(f"the bases' logits have {self.num_gaussians} rows, not {n}; after densification "
                             "call remap_gaussians")
        u = self.to_unit(means.detach().to(self.pivots.dtype).to(self.pivots.device))
        K = self.num_bases
        idx = farthest_point_sample(u, K)
        piv = u[idx]
        if piv.shape[0] < K:  # fewer Gaussians than bases: repeat (the extra bases start as copies)
            piv = piv[torch.arange(K, device=piv.device) % max(1, piv.shape[0])]
        self.pivots.copy_(piv)
        if K > 1:
            dp = torch.cdist(piv, piv) + torch.eye(K, device=piv.device) * 1e9
            sigma = float(dp.min(1).values.mean().clamp_min(1e-3))
        else:
            sigma = 1.0
        d2 = torch.cdist(u, piv) ** 2
        self.logits.data = (-d2 / (2 * sigma ** 2)).to(self.logits.dtype)  # never used yet: same object

    def _check_rows(self, means: torch.Tensor) -> None:
        n = means.shape[0]
        if self.num_gaussians == 0 and n > 0:
            self.init_gaussians(means)
        elif self.num_gaussians != n:
            raise ValueError(f"deform.kind=bases blends by each Gaussian's own weights: it has {self.num_gaussians} "
                             f"rows but {n} points were given (pass the canonical Gaussians, with rows= for a "
                             "subset; losses that move other points, e.g. motion.elastic / background / cycle, do "
                             "not apply to this field)")

    # ---- motion --------------------------------------------------------------------------------
    def basis_transforms(self, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R [K,3,3], T [K,3]): basis k maps scene-unit u to R_k u + T_k at time t (T_k = p_k + τ_k - R_k p_k)."""
        tt = torch.as_tensor(t, dtype=self.coef.dtype, device=self.coef.device).reshape(())
        phi = cosine_series(tt, self.coef.shape[1])                 # [J]
        v = torch.einsum("j,kjc->kc", phi, self.coef)               # [K,6]
        R = so3_exp_matrix(v[:, :3])
        p = self.pivots.to(v.dtype)
        T = p + v[:, 3:] - (R @ p[:, :, None])[..., 0]
        return R, T

    def forward(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None) -> Motion:
        """Motion of the N canonical Gaussians means [N,3] at time t in [0, 1] (`frame` is not used: the bases are
        continuous in t). Raises ValueError when N is not the logits' row count (creates the rows when there are
        none yet)."""
        return self.motion_of(means, t, frame)

    def motion_of(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None,
                  rows: torch.Tensor | None = None) -> Motion:
        """Motion of the Gaussians `rows` [A] (int64; all when None) of the canonical Gaussians means [N,3]."""
        if means.shape[0] == 0:
            return Motion.identity(0, means.device, means.dtype)
        self._check_rows(means)
        mu = means if rows is None else means.index_select(0, rows)
        if mu.shape[0] == 0:
            return Motion.identity(0, means.device, means.dtype)
        w = self.weights(rows).to(means.dtype)                       # [A,K]
        R, T = self.basis_transforms(t)
        R, T = R.to(means.dtype), T.to(means.dtype)
        M = torch.einsum("ak,kij->aij", w, R)                        # blended (not orthonormal) [A,3,3]
        u = self.to_unit(mu)
        u_new = (M @ u[:, :, None])[..., 0] + w @ T
        Q = self.world_rotation.to(means.dtype)
        r = self.world_radius.to(means.dtype)
        x_new = self.world_center.to(means.dtype) + r * (u_new @ Q.T)
        R_world = Q @ gram_schmidt_rotation(M) @ Q.T
        return Motion(matrix_to_quat(R_world), x_new - (R_world @ mu[:, :, None])[..., 0], None)

    # ---- densification -------------------------------------------------------------------------
    @torch.no_grad()
    def remap_gaussians(self, parents: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """New Gaussian i came from old Gaussian parents[i] (parents [M] int): the logits become
        ``old[parents]``, a new Parameter swapped into `optimizer` with its Adam moments gathered the same way.
        Nothing to do before the rows exist. Raises ValueError for an index outside the old rows."""
        n_old = self.num_gaussians
        if n_old == 0:
            return
        old = self.logits
        parents = checked_parents(parents, n_old, old.device)
        new = nn.Parameter(old.detach().index_select(0, parents).clone(), requires_grad=old.requires_grad)
        self.logits = new
        if optimizer is not None:
            _swap_in_optimizer(optimizer, {id(old): (old, new)}, parents)

    def on_gaussians_changed(self, means: torch.Tensor) -> None:
        """Checks that the rows follow the Gaussians (:meth:`remap_gaussians` must have run); ValueError if not."""
        if self.num_gaussians not in (0, means.shape[0]):
            raise ValueError(f"the Gaussians changed to {means.shape[0]} but the bases' logits have "
                             f"{self.num_gaussians} rows: call remap_gaussians(parents, optimizer) after "
                             "densification")

    # ---- optimizer / checkpoints ---------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        """Trajectory coefficients at `lr`, blend logits at lr x weight_lr_mult."""
        return [{"name": "deform.bases.coef", "params": [self.coef], "lr": lr},
                {"name": "deform.bases.weights", "params": [self.logits], "lr": lr * self.weight_lr_mult}]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        src = state_dict.get(f"{prefix}logits")  # the row count differs between checkpoints
        if src is not None and tuple(src.shape) != tuple(self.logits.shape):
            self.logits = nn.Parameter(torch.zeros(src.shape, dtype=self.logits.dtype, device=self.logits.device),
                                       requires_grad=self.logits.requires_grad)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
