"""C++/OpenMP CPU rasterizer (kernels/cpu), JIT-built on first use, behind :func:`render`.

Semantics are those of :mod:`.torch_reference` (the specification); the kernels give the same images and
the same gradients up to rounding, only faster. The sources come from :func:`dyngauss.resources.kernel_source_dir`
(shipped inside the installed package; the repository's kernels/cpu in a clone). The kernels are torch operators
compiled once per source version with ``torch.utils.cpp_extension.load`` into ``$DYNGAUSS_CACHE/kernels/<name>``
(default ``~/.cache/dyngauss/kernels``). ``<name>`` carries a hash of the sources, compiler flags and
torch/Python versions, so editing a kernel rebuilds it and a stale build is never loaded. Because a build is
immutable, one already compiled in the default folder is also loaded (read-only) when $DYNGAUSS_CACHE points
elsewhere, e.g. to a per-session temporary folder in tests.

When the kernel cannot be built or loaded, :func:`build_extension` raises :class:`KernelUnavailableError` (with
the cause and the fix); the failure is remembered for the process. ``backend="auto"`` then falls back to the torch
reference after :func:`warn_fallback` has said so once per process (:class:`KernelFallbackWarning`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch

_CFLAGS = ["-O3", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]
_FIX = ("install a C++ compiler with OpenMP (e.g. `apt-get install g++`) and ninja (`pip install ninja`); the "
        "kernel then builds once, on first use")

# Process state. The loaded operator namespace (torch.ops.<name>), or the KernelUnavailableError the build raised
# (tried once per process); and whether the fallback warning was already given.
_loaded: object | Exception | None = None
_fallback_warned = False


class KernelUnavailableError(RuntimeError):
    """The C++ CPU kernel cannot be built or loaded; the message gives the cause and what to install."""


class KernelFallbackWarning(RuntimeWarning):
    """backend="auto" renders with the slow torch reference because the C++ CPU kernel did not load."""


def default_cache_dir() -> Path:
    """~/.cache/dyngauss/kernels."""
    return Path.home() / ".cache" / "dyngauss" / "kernels"


def cache_dir() -> Path:
    """Where kernels are built: $DYNGAUSS_CACHE/kernels, default ~/.cache/dyngauss/kernels."""
    from ..resources import cache_root

    return cache_root() / "kernels"


def _sources() -> list[Path]:
    """C++ sources (compiled) and headers (hashed) of the kernel. Raises KernelUnavailableError when missing."""
    from ..resources import kernel_source_dir

    try:
        d = kernel_source_dir()
    except FileNotFoundError as e:
        raise KernelUnavailableError(str(e)) from None
    return sorted(p for p in d.iterdir() if p.suffix in (".cpp", ".h"))


def _build_name(sources: list[Path]) -> str:
    """Extension name keyed by the sources, flags, torch and Python versions."""
    h = hashlib.sha256()
    for p in sources:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(" ".join(_CFLAGS + _LDFLAGS).encode())
    h.update(f"{torch.__version__}|{sys.version_info[:2]}".encode())
    return f"dyngauss_cpu_{h.hexdigest()[:16]}"


def _ninja_dirs() -> list[str]:
    """Folders that may hold pip's ninja executable when it is not on PATH (a venv that is not activated)."""
    dirs = [str(Path(sys.executable).parent)]
    try:
        import ninja  # the pip package: knows where it put its executable

        dirs.append(str(getattr(ninja, "BIN_DIR", "") or ""))
    except ImportError:
        pass
    return [d for d in dict.fromkeys(dirs) if d and (Path(d) / "ninja").exists()]


def _check_toolchain() -> None:
    """Fail early, with what to install, when no C++ compiler or ninja is found (KernelUnavailableError)."""
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None and shutil.which("g++") is None:
        raise KernelUnavailableError(
            f"no C++ compiler found (looked for {cxx!r} and 'g++'). The dyngauss CPU kernel needs a C++ "
            "compiler with OpenMP: install g++ (e.g. `apt-get install g++`) or set CXX; or use backend='torch'.")
    if shutil.which(cxx) is None:
        os.environ["CXX"] = "g++"
    if not cpp_extension.is_ninja_available():
        for d in _ninja_dirs():
            os.environ["PATH"] = f"{d}{os.pathsep}{os.environ.get('PATH', '')}"
            if cpp_extension.is_ninja_available():
                break
        if not cpp_extension.is_ninja_available():
            raise KernelUnavailableError(
                "ninja not found; the dyngauss CPU kernel build needs it: `pip install ninja`.")


def _load_prebuilt(name: str) -> bool:
    """Load an existing build of `name` from the cache folders without invoking the compiler."""
    for d in dict.fromkeys([cache_dir(), default_cache_dir()]):
        lib = d / name / f"{name}.so"
        if lib.is_file():
            try:
                torch.ops.load_library(str(lib))
                return True
            except OSError:  # unreadable / half-written: build it instead
                continue
    return False


def _tail(text: str, lines: int = 8) -> str:
    """The last non-empty `lines` lines of a (compiler) message: where the actual error is."""
    kept = [ln.rstrip() for ln in str(text).splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def build_extension(verbose: bool = False):
    """Compile (or load the cached build of) the kernel; returns its op namespace.

    Raises KernelUnavailableError (a RuntimeError) with the cause and the fix; a failure is remembered, so
    later calls in the same process raise it again without rebuilding."""
    global _loaded
    if _loaded is not None:
        if isinstance(_loaded, Exception):
            raise _loaded
        return _loaded
    try:
        sources = _sources()
        name = _build_name(sources)
        if not _load_prebuilt(name):
            from torch.utils import cpp_extension

            _check_toolchain()
            build_dir = cache_dir() / name
            try:
                build_dir.mkdir(parents=True, exist_ok=True)
                cpp_extension.load(name=name, sources=[str(p) for p in sources if p.suffix == ".cpp"],
                                   extra_cflags=_CFLAGS, extra_ldflags=_LDFLAGS,
                                   extra_include_paths=[str(sources[0].parent)],
                                   build_directory=str(build_dir), is_python_module=False, verbose=verbose)
            except Exception as e:  # noqa: BLE001 - compiler and loader errors come in many types
                raise KernelUnavailableError(
                    f"building the dyngauss C++ CPU kernel from {sources[0].parent} failed in {build_dir}. It needs "
                    "a C++ compiler with OpenMP (e.g. `apt-get install g++`), ninja (`pip install ninja`) and the "
                    f"torch headers; use backend='torch' meanwhile. Cause: {type(e).__name__}: {_tail(str(e))}"
                ) from e
    except KernelUnavailableError as e:
        _loaded = e
        raise
    except Exception as e:  # noqa: BLE001 - unreadable sources, a broken cache folder, ...
        _loaded = KernelUnavailableError(f"loading the dyngauss C++ CPU kernel failed: {type(e).__name__}: {e}")
        raise _loaded from e
    _loaded = getattr(torch.ops, name)
    return _loaded


def _ext():
    """The loaded op namespace; re-raises the remembered build error instead of rebuilding on every call."""
    return build_extension()


def is_available() -> bool:
    """True when the kernel builds and loads (tried once, result cached); never raises."""
    try:
        _ext()
        return True
    except Exception:  # noqa: BLE001
        return False


def unavailable_reason() -> str | None:
    """None when the kernel loads, else why not (the KernelUnavailableError message). Never raises."""
    try:
        _ext()
        return None
    except Exception as e:  # noqa: BLE001
        return str(e) if isinstance(e, KernelUnavailableError) else f"{type(e).__name__}: {e}"


def warn_fallback(reason: str) -> bool:
    """Say once per process, loudly, that backend="auto" renders with the torch reference instead of the kernel.

    Emits a :class:`KernelFallbackWarning` (shown on stderr) naming the reason and the fix; returns True when it
    warned, False when it had already warned in this process."""
    global _fallback_warned
    if _fallback_warned:
        return False
    _fallback_warned = True
    warnings.warn(
        "\n  dyngauss: the C++ CPU rasterizer is unavailable, so render.backend=auto renders with the torch "
        "reference (the same images, about 30x slower).\n"
        f"  Reason: {reason}\n"
        f"  Fix: {_FIX}. To use the reference on purpose and silence this warning, set render.backend=torch "
        "(backend='torch').", KernelFallbackWarning, stacklevel=3)
    return True


class _Project(torch.autograd.Function):
    """Projection op: (means, quats, scales, viewmats) -> (means2d, conics, depths, extents, radii).

    Gradients flow to means, quats, scales and viewmats (pose refinement); Ks get none."""

    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width: int, height: int, eps2d: float, near: float,
                far: float):
        means2d, conics, depths, ext, radii = _ext().project_fwd(means, quats, scales, viewmats, Ks, width, height,
                                                                 eps2d, near, far)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks)
        ctx.cfg = (width, height, eps2d, near, far)
        ctx.mark_non_differentiable(ext, radii)
        return means2d, conics, depths, ext, radii

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_means2d, g_conics, g_depths, _g_ext, _g_radii):
        means, quats, scales, viewmats, Ks = ctx.saved_tensors
        g_means, g_quats, g_scales, g_viewmats = _ext().project_bwd(means, quats, scales, viewmats, Ks, *ctx.cfg,
                                                                    g_means2d, g_conics, g_depths)
        g_viewmats = g_viewmats if ctx.needs_input_grad[3] else None  # Ks get no gradient
        return g_means, g_quats, g_scales, g_viewmats, None, None, None, None, None, None


class _Rasterize(torch.autograd.Function):
    """Compositing op: (means2d, conics, colors [C,N,D], opacities [N]|[C,N]) -> (image, alpha).

    The forward pass keeps its tile lists and per-contribution log ("state") for the backward pass."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, extents, width: int, height: int, tile_size: int):
        C, N = means2d.shape[:2]
        op = opacities.expand(C, N) if opacities.dim() == 1 else opacities
        record = any(ctx.needs_input_grad[:4])  # the contribution log is only for the backward pass
        img, alpha, *state = _ext().rasterize_fwd(means2d, conics, colors, op, depths, extents, width, height,
                                                  tile_size, record)
        ctx.save_for_backward(means2d, conics, colors, op, *state)
        ctx.cfg = (width, height, tile_size)
        ctx.op_dim = opacities.dim()
        return img, alpha

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_img, g_alpha):
        means2d, conics, colors, op, *state = ctx.saved_tensors
        g_m2, g_con, g_col, g_op = _ext().rasterize_bwd(means2d, conics, colors, op, *ctx.cfg, state, g_img, g_alpha)
        if ctx.op_dim == 1:
            g_op = g_op.sum(0)
        return g_m2, g_con, g_col, g_op, None, None, None, None, None


def _check_cpu(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.device.type != "cpu":
            raise ValueError(f"the cpu backend needs CPU tensors; {name} is on {t.device}")


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmats: torch.Tensor,
            Ks: torch.Tensor, width: int, height: int, *, eps2d: float = 0.3, near: float = 0.01,
            far: float = 1e10) -> tuple[torch.Tensor, ...]:
    """Differentiable twin of torch_reference.project_gaussians: (means2d, conics, depths, extents, radii)."""
    dt = means.dtype
    return _Project.apply(means, quats.to(dt), scales.to(dt), viewmats.to(dt), Ks.to(dt), int(width),
                          int(height), float(eps2d), float(near), float(far))


def rasterize_pixels(means2d: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, opacities: torch.Tensor,
                     depths: torch.Tensor, extents: torch.Tensor, width: int, height: int,
                     tile_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable twin of torch_reference.rasterize_pixels: (image [C,H,W,D], alpha [C,H,W,1])."""
    dt = means2d.dtype
    return _Rasterize.apply(means2d, conics.to(dt), colors.to(dt), opacities.to(dt), depths.to(dt),
                            extents.to(dt), int(width), int(height), int(tile_size))


def render(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
           values: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, W: int, H: int, *, near: float,
           far: float, eps2d: float, tile_size: int = 16) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Project and composite N Gaussians into C cameras with the C++ kernel.

    Args: means [N,3], quats [N,4], scales [N,3], opacities [N] or [C,N], values [C,N,D] (any D channels),
    viewmats [C,4,4], Ks [C,3,3]. Returns (img [C,H,W,D], alpha [C,H,W,1], info) with info holding means2d
    [C,N,2] (its .grad is kept for densification), radii [C,N,2] int32, depths [C,N], conics [C,N,3].
    """
    _check_cpu(means=means, quats=quats, scales=scales, opacities=opacities, values=values, viewmats=viewmats,
               Ks=Ks)
    means2d, conics, depths, ext, radii = project(means, quats, scales, viewmats, Ks, W, H,
                                                  eps2d=eps2d, near=near, far=far)
    if means2d.requires_grad:
        means2d.retain_grad()
    img, alpha = rasterize_pixels(means2d, conics, values, opacities, depths, ext, W, H, tile_size)
    return img, alpha, {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics}
