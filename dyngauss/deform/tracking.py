"""Per-Gaussian tracking (Dynamic3DGaussians: Luiten et al., "Dynamic 3D Gaussians: Tracking by Persistent
Dynamic View Synthesis", 3DV 2024), `deform.kind=tracking`.

No network: every Gaussian i has its own rigid motion at every training frame f, two learned vectors

* ``rotvec[f][i]`` ω [3]: a rotation vector (the so(3) logarithm, radians) turning the Gaussian about its own
  centre;
* ``offset[f][i]`` τ [3]: the displacement of its centre, in units of the scene radius.

Both start at zero (the identity). The posed centre is μ + r Q τ and the posed orientation R ⊗ q with
R = Q exp(ω) Q^T (r, Q: the scene's radius and axes, :meth:`TrackingField.set_world_frame`; the field learns in
the scene's own units and axes, as the network fields do, so its learning rates do not depend on the world's
units). As a :class:`~dyngauss.deform.base.Motion`: rot = R, trans = μ + r Q τ - R μ. Dynamic3DGaussians stores
each frame's centre and orientation directly; the offsets from the canonical Gaussians are the same thing with
the canonical Gaussians as the shared reference (and what the isometry / rigidity terms compare against).

Frames and times: frame f is at ``frame_times[f]`` (sorted, in [0, 1]). With a frame index the frame's row is
used exactly. Between two training frames t_a < t < t_b (weight a = (t - t_a) / (t_b - t_a)) the motion is
interpolated: the centre moves on the straight line between its two positions (τ linear in a) and the rotation
by spherical linear interpolation, R(a) = R_a exp(a log(R_a^T R_b)) (the shorter arc; slerp of the unit
quaternions). Outside [t_0, t_last] the first / last frame is used (clamped).

Training: all frames jointly (the trainer samples frames at random), not Dynamic3DGaussians' frame-after-frame
schedule. Every frame's rotation and offset tables are Parameters of their own (``rotvec`` / ``offset`` are
:class:`torch.nn.ParameterList` of F tensors [N,3]): a step's gradient reaches only the frames it rendered, and
torch's Adam skips tensors without a gradient, so an unseen frame keeps its values and Adam moments (no drift
from stale momentum) and each frame's bias correction counts its own updates — as if each frame had its own
optimizer, which Dynamic3DGaussians has. The regularisers are the trainer's motion.rigidity_weight /
rotation_weight / isometry_weight (losses/rigidity.py), between the poses at t and t +- motion.rigidity_dt
(interpolated between frames off the training times) or between the canonical Gaussians and t
(rigidity_dt = 0).

Rows follow the Gaussians: the table has one row per canonical Gaussian, created (identity) at the first call
with N > 0 Gaussians (:meth:`TrackingField.init_gaussians`). When densification clones, splits or prunes
Gaussians, :meth:`TrackingField.remap_gaussians` takes the strategy's parent of every new Gaussian (the trainer
gets it from gsplat's strategy state, which the strategy duplicates / splits / prunes along with the Gaussians)
and copies the parent's rows and Adam moments; :func:`parents_by_nearest` finds parents by nearest canonical
centre for strategies that report none. Rows are resized on ``load_state_dict`` (a checkpoint loads into a
freshly built field). Settings: :class:`~dyngauss.deform.config.TrackingFieldConfig`.
"""
from __future__ import annotations

import bisect
from typing import Sequence

import torch
from torch import nn

from ..geometry.quaternion import matrix_to_quat, quat_conjugate, quat_multiply, quat_rotate
from ..geometry.so3 import so3_exp_quat, so3_log_quat
from .base import DeformField, Motion, checked_parents, checked_world_frame
from .encoding import frame_interp, frame_times_tensor

__all__ = ["TrackingField", "parents_by_nearest"]

_TABLES = ("rotvec", "offset")


def _slerp_rotvec(w0: torch.Tensor, w1: torch.Tensor, a: float | torch.Tensor) -> torch.Tensor:
    """Unit quaternions [...,4] of R(a) = exp(w0) exp(a log(exp(w0)^T exp(w1))) for rotation vectors w0, w1
    [...,3]: slerp from a = 0 (w0) to a = 1 (w1) along the shorter arc. Differentiable also where the two
    rotations coincide (the log / exp series, geometry/so3.py), which acos-based slerp is not."""
    q0, q1 = so3_exp_quat(w0), so3_exp_quat(w1)
    rel = so3_log_quat(quat_multiply(quat_conjugate(q0), q1))
    return quat_multiply(q0, so3_exp_quat(a * rel))


@torch.no_grad()
def parents_by_nearest(old_means: torch.Tensor, new_means: torch.Tensor) -> torch.Tensor:
    """The parent [M] (int64 index into old_means [N,3]) of every Gaussian of new_means [M,3]: its nearest old
    canonical centre. Clones sit on their parent and split children within its extent, so this recovers a
    densification's mapping when the strategy reports none (it may pick a neighbour for a split child).
    Raises ValueError when there are new Gaussians but no old ones."""
    from ..geometry.knn import knn

    if new_means.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=new_means.device)
    if old_means.shape[0] == 0:
        raise ValueError("no previous Gaussians to find parents among")
    _, idx = knn(new_means.detach().float(), old_means.detach().float().to(new_means.device), 1)
    return idx[:, 0].long()


class TrackingField(DeformField):
    """Per-Gaussian, per-frame rigid motions (module docstring).

    Args:
        num_frames: F >= 1, the training frames.
        frame_times: their times [F] in [0, 1], increasing (default: evenly spaced).
        rot_lr_mult: the rotations' learning rate as a multiple of the offsets' (:meth:`param_groups`).
    Raises ValueError for F < 1, a wrong number of times or times that do not increase.
    """

    kind = "tracking"

    def __init__(self, num_frames: int, frame_times: Sequence[float] | None = None, rot_lr_mult: float = 1.0):
        super().__init__()
        if not num_frames or int(num_frames) < 1:
            raise ValueError("deform.kind=tracking needs the number of training frames (from the data), got "
                             f"{num_frames!r}")
        n_frames = int(num_frames)
        times = frame_times_tensor(n_frames, frame_times)
        if n_frames > 1 and not bool((times[1:] > times[:-1]).all()):
            raise ValueError(f"deform.kind=tracking: frame times must increase, got {times.tolist()}")
        self.rot_lr_mult = float(rot_lr_mult)
        self.register_buffer("frame_times", times)
        self.register_buffer("world_radius", torch.ones(()))
        self.register_buffer("world_rotation", torch.eye(3))
        self.rotvec = nn.ParameterList([nn.Parameter(torch.zeros(0, 3)) for _ in range(n_frames)])
        self.offset = nn.ParameterList([nn.Parameter(torch.zeros(0, 3)) for _ in range(n_frames)])
        self._host_times: list[float] | None = None

    # ---- state ---------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self.rotvec)

    @property
    def num_gaussians(self) -> int:
        """Rows of the tables (0 before the first call)."""
        return int(self.rotvec[0].shape[0])

    def table(self) -> torch.Tensor:
        """All frames' rows as one tensor [F,N,6]: (rotation vector in radians, offset in scene radii), in the
        scene's axes. A copy for inspection (no gradient to the tables)."""
        return torch.cat([torch.stack([p.detach() for p in self.rotvec]),
                          torch.stack([p.detach() for p in self.offset])], -1)

    @torch.no_grad()
    def set_world_frame(self, center, radius: float, rotation=None) -> None:
        """The scene's radius r > 0 (world units; offsets are in units of r) and axes Q [3,3] (a rotation, default
        identity; the tables are written in them). The centre plays no role (motions act about each Gaussian's
        own centre); it is accepted for the interface the trainer calls (train/scene.py). Raises ValueError for a
        radius that is not positive and finite or a Q that is no rotation."""
        _, r, Q = checked_world_frame(None, radius, rotation)  # the centre is not used (see above)
        self.world_radius.fill_(r)
        self.world_rotation.copy_(Q.to(self.world_rotation.dtype))

    @torch.no_grad()
    def init_gaussians(self, n: int) -> None:
        """Create identity rows for n Gaussians when the tables are still empty (the first call does this).
        Raises ValueError when they already have another number of rows."""
        n = int(n)
        if self.num_gaussians == n:
            return
        if self.num_gaussians != 0:
            raise ValueError(f"the tracking tables have {self.num_gaussians} rows, not {n}; after densification "
                             "call remap_gaussians")
        for name in _TABLES:
            for p in getattr(self, name):
                p.data = torch.zeros(n, 3, dtype=p.dtype, device=p.device)  # never used yet: same object

    def _check_rows(self, n: int) -> None:
        if self.num_gaussians == 0 and n > 0:
            self.init_gaussians(n)
        elif self.num_gaussians != n:
            raise ValueError(f"deform.kind=tracking moves each Gaussian by its own table row: the tables have "
                             f"{self.num_gaussians} rows but {n} points were given (pass the canonical Gaussians, "
                             "with rows= for a subset; losses that move other points, e.g. motion.elastic / "
                             "background / cycle, do not apply to this field)")

    # ---- time ----------------------------------------------------------------------------------
    def _times(self) -> list[float]:
        if self._host_times is None:
            self._host_times = [float(v) for v in self.frame_times.detach().cpu()]
        return self._host_times

    def _bracket(self, t: float) -> tuple[int, int, float]:
        """(lo, hi, a): t between frames lo and hi with weight a of hi; clamped to the first / last frame."""
        ts = self._times()
        i = bisect.bisect_right(ts, t)
        if i == 0:
            return 0, 0, 0.0
        if i >= len(ts):
            return len(ts) - 1, len(ts) - 1, 0.0
        lo = i - 1
        a = (t - ts[lo]) / (ts[i] - ts[lo])
        return (lo, lo, 0.0) if a <= 0.0 else (lo, i, float(a))

    # ---- motion --------------------------------------------------------------------------------
    def local_motion(self, t: float | torch.Tensor, frame: int | None = None,
                     rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(unit quaternions [A,4] wxyz of exp(ω), offsets τ [A,3]) at time t in the scene's axes and units, for
        the rows `rows` [A] (all N when None). `frame` given: that frame exactly; else interpolated in t (module
        docstring). A CUDA tensor t is handled on the device (no host sync: CUDA-graph capture). Raises
        ValueError for a frame index outside [0, F)."""
        def pick(p: torch.Tensor) -> torch.Tensor:
            return p if rows is None else p.index_select(0, rows)

        if frame is not None:
            f = int(frame)
            if not 0 <= f < self.num_frames:
                raise ValueError(f"frame {f} outside the tracking field's {self.num_frames} frames")
            return so3_exp_quat(pick(self.rotvec[f])), pick(self.offset[f])
        if isinstance(t, torch.Tensor) and t.is_cuda:  # device path: every frame stacked, indices on the device
            lo, hi, a = frame_interp(self.frame_times, t.reshape(1).to(self.frame_times.dtype))
            W, D = torch.stack(list(self.rotvec)), torch.stack(list(self.offset))
            w0, w1 = pick(W.index_select(0, lo)[0]), pick(W.index_select(0, hi)[0])
            d0, d1 = pick(D.index_select(0, lo)[0]), pick(D.index_select(0, hi)[0])
            a = a.to(W.dtype)
            return _slerp_rotvec(w0, w1, a), (1 - a) * d0 + a * d1
        lo, hi, a = self._bracket(float(t))
        if hi == lo:
            return so3_exp_quat(pick(self.rotvec[lo])), pick(self.offset[lo])
        w0, w1 = pick(self.rotvec[lo]), pick(self.rotvec[hi])
        d0, d1 = pick(self.offset[lo]), pick(self.offset[hi])
        return _slerp_rotvec(w0, w1, a), (1 - a) * d0 + a * d1

    def _world(self, q: torch.Tensor, tau: torch.Tensor, mu: torch.Tensor) -> Motion:
        """Motion of centres mu [A,3] from the scene-frame rotation q [A,4] (about each centre) and offset tau."""
        Q = self.world_rotation.to(q.dtype)
        qQ = matrix_to_quat(Q).reshape(1, 4).expand_as(q)
        rot = quat_multiply(quat_multiply(qQ, q), quat_conjugate(qQ))
        disp = self.world_radius.to(tau.dtype) * (tau @ Q.T)
        return Motion(rot, mu + disp - quat_rotate(rot, mu), None)

    def forward(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None) -> Motion:
        """Motion of the N canonical Gaussians means [N,3] at time t (frame: the training frame's row exactly).
        Raises ValueError when N is not the tables' row count (creates the rows when there are none yet)."""
        return self.motion_of(means, t, frame)

    def motion_of(self, means: torch.Tensor, t: float | torch.Tensor, frame: int | None = None,
                  rows: torch.Tensor | None = None) -> Motion:
        """Motion of the Gaussians `rows` [A] (int64; all when None) of the canonical Gaussians means [N,3]."""
        n = means.shape[0]
        if n == 0:
            return Motion.identity(0, means.device, means.dtype)
        self._check_rows(n)
        mu = means if rows is None else means.index_select(0, rows)
        if mu.shape[0] == 0:
            return Motion.identity(0, means.device, means.dtype)
        q, tau = self.local_motion(t, frame, rows)
        return self._world(q.to(means.dtype), tau.to(means.dtype), mu)

    # ---- densification -------------------------------------------------------------------------
    @torch.no_grad()
    def remap_gaussians(self, parents: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """The Gaussians changed: new Gaussian i came from old Gaussian parents[i] (parents [M] int; a survivor
        is its own parent, a clone or split child its source, pruned Gaussians appear nowhere). Every frame's
        rows become ``old[parents]``; the tables are new Parameters, swapped into `optimizer` (when given) with
        their per-row state (Adam moments) gathered the same way. Nothing to do before the rows exist. Raises
        ValueError for an index outside the old rows."""
        n_old = self.num_gaussians
        if n_old == 0:
            return
        parents = checked_parents(parents, n_old, self.rotvec[0].device)
        swaps: dict[int, tuple[nn.Parameter, nn.Parameter]] = {}  # id(old) -> (old, new)
        for name in _TABLES:
            plist = getattr(self, name)
            for f in range(len(plist)):
                old = plist[f]
                new = nn.Parameter(old.detach().index_select(0, parents).clone(), requires_grad=old.requires_grad)
                plist[f] = new
                swaps[id(old)] = (old, new)
        if optimizer is not None:
            _swap_in_optimizer(optimizer, swaps, parents)

    def on_gaussians_changed(self, means: torch.Tensor) -> None:
        """Checks that the rows follow the Gaussians (:meth:`remap_gaussians` must have run); ValueError if not."""
        if self.num_gaussians not in (0, means.shape[0]):
            raise ValueError(f"the Gaussians changed to {means.shape[0]} but the tracking tables have "
                             f"{self.num_gaussians} rows: call remap_gaussians(parents, optimizer) after "
                             "densification (parents_by_nearest when the strategy reports no parents)")

    # ---- optimizer / checkpoints ---------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        """Offsets at `lr` (scene radii), rotation vectors at lr x rot_lr_mult (radians)."""
        return [{"name": "deform.tracking.offset", "params": list(self.offset), "lr": lr},
                {"name": "deform.tracking.rot", "params": list(self.rotvec), "lr": lr * self.rot_lr_mult}]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # the row count differs between checkpoints: adopt the stored shapes before the tables load
        for name in _TABLES:
            plist = getattr(self, name)
            for f in range(len(plist)):
                src = state_dict.get(f"{prefix}{name}.{f}")
                if src is not None and tuple(src.shape) != tuple(plist[f].shape):
                    cur = plist[f]
                    plist[f] = nn.Parameter(torch.zeros(src.shape, dtype=cur.dtype, device=cur.device),
                                            requires_grad=cur.requires_grad)
        self._host_times = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _apply(self, fn, *args, **kwargs):
        self._host_times = None  # the times buffer may be replaced (device / dtype moves)
        return super()._apply(fn, *args, **kwargs)


def _swap_in_optimizer(optimizer: torch.optim.Optimizer, swaps: dict, parents: torch.Tensor) -> None:
    """Replace the parameters `swaps` (id(old) -> (old, new)) in `optimizer`'s groups; per-row state tensors
    (same rank as the parameter) of the old ones are gathered by `parents` onto the new ones (scalars such as
    Adam's step are kept)."""
    for group in optimizer.param_groups:
        group["params"] = [swaps[id(p)][1] if id(p) in swaps else p for p in group["params"]]
    for old, new in swaps.values():
        if old not in optimizer.state:
            continue
        st = optimizer.state.pop(old)
        for key, v in list(st.items()):
            if torch.is_tensor(v) and v.dim() == new.dim() and v.dim() > 0:
                st[key] = v.index_select(0, parents.to(v.device))
        optimizer.state[new] = st
