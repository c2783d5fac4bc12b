"""An installed dyngauss (wheel, `pip install .`) carries its C++ kernel sources and configs and trains with the
kernel; a kernel that cannot load is reported loudly (backend="auto") or as a clear error (backend="cpu").

The install test (slow, ~1-2 min: it compiles the kernel from the installed sources) builds a wheel from a copy
of the source tree, installs it with --no-deps into a fresh venv outside the repository that sees the current
environment's dependencies through a .pth file (nothing is downloaded), and trains 20 steps on the built-in
scene with render.backend=cpu from a temporary folder; then the same for a non-editable `pip install <tree>`.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from dyngauss.data.camera import Camera, look_at_viewmat
from dyngauss.render import cpu_backend, rasterize
from dyngauss.render.api import resolve_backend
from dyngauss.render.cpu_backend import KernelFallbackWarning, KernelUnavailableError

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
COMPILER_ERROR = "rasterize.cpp:3:10: fatal error: omp.h: No such file or directory"


# ------------------------------------------------------------------------------------ a kernel that cannot build
@pytest.fixture
def failing_build(monkeypatch, tmp_path):
    """The kernel build fails like a compiler without OpenMP would (fresh process state; restored afterwards).
    Returns the list of build attempts."""
    from torch.utils import cpp_extension

    attempts = []

    def fail(**kw):
        attempts.append(kw["name"])
        noise = "\n".join(f"[{i}/3] c++ -O3 -fopenmp -c source{i}.cpp" for i in range(40))
        raise RuntimeError(f"Error building extension '{kw['name']}':\n{noise}\n{COMPILER_ERROR}\n"
                           "ninja: build stopped: subcommand failed.")

    monkeypatch.setattr(cpu_backend, "_loaded", None)
    monkeypatch.setattr(cpu_backend, "_fallback_warned", False)
    monkeypatch.setattr(cpu_backend, "_load_prebuilt", lambda name: False)
    monkeypatch.setattr(cpu_backend, "_check_toolchain", lambda: None)
    monkeypatch.setattr(cpp_extension, "load", fail)
    monkeypatch.setenv("DYNGAUSS_CACHE", str(tmp_path / "cache"))
    return attempts


def _tiny_render(backend: str):
    g = torch.Generator().manual_seed(0)
    n = 20
    cam = Camera(torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]]),
                 torch.as_tensor(look_at_viewmat((0.0, -3.0, 1.0)), dtype=torch.float32), 32, 24)
    quats = torch.randn(n, 4, generator=g)
    return rasterize(torch.randn(n, 3, generator=g) * 0.3, quats, torch.full((n, 3), 0.1), torch.full((n,), 0.8),
                     torch.rand(n, 3, generator=g), cam, backend=backend)


def test_auto_falls_back_with_one_loud_warning(failing_build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_backend("auto", CPU) == "torch"
        out = _tiny_render("auto")
        assert resolve_backend("auto", CPU) == "torch"
    assert out.info["backend"] == "torch" and out.rgb.shape == (1, 24, 32, 3)
    fallback = [w for w in caught if issubclass(w.category, KernelFallbackWarning)]
    assert len(fallback) == 1, [str(w.message) for w in caught]
    msg = str(fallback[0].message)
    assert COMPILER_ERROR in msg                              # the reason: the build error's last lines
    assert "source0.cpp" not in msg and "source39.cpp" in msg  # ... only the last ones
    assert "apt-get install g++" in msg and "pip install ninja" in msg and "render.backend=torch" in msg
    assert failing_build == [failing_build[0]]               # built once, the failure remembered


def test_explicit_cpu_backend_raises_the_reason(failing_build):
    with pytest.raises(KernelUnavailableError, match="omp.h: No such file"):
        resolve_backend("cpu", CPU)
    with pytest.raises(KernelUnavailableError, match="omp.h: No such file"):
        _tiny_render("cpu")
    assert isinstance(KernelUnavailableError("x"), RuntimeError)  # callers catching RuntimeError still do
    assert len(failing_build) == 1


def test_missing_kernel_sources_fall_back_with_the_reason(monkeypatch, tmp_path):
    """A package installed without its kernel sources (the old packaging bug) says where it looked."""
    from dyngauss import resources

    monkeypatch.setattr(cpu_backend, "_loaded", None)
    monkeypatch.setattr(cpu_backend, "_fallback_warned", False)
    monkeypatch.setattr(resources, "_PACKAGE", tmp_path / "site-packages" / "dyngauss")
    with pytest.warns(KernelFallbackWarning, match="C\\+\\+ kernel sources not found.*_kernels/cpu"):
        assert resolve_backend("auto", CPU) == "torch"


def test_train_command_with_unloadable_kernel_exits_1(failing_build, tmp_path, capsys):
    from dyngauss.cli.main import main
    from dyngauss.data.synthetic import SyntheticConfig, generate

    scene = generate(tmp_path / "scene", SyntheticConfig(resolution=16, n_train=3, n_val=1, n_test=1, n_video=0,
                                                         n_tracks=10, supersample=1))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  iters: 2\n  progress: false\n")
    rc = main(["train", "--config", str(cfg), f"data.path={scene}", f"out={tmp_path / 'run'}",
               "render.backend=cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error:") and "omp.h" in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------ installed package, fresh venv
def _source_copy(dst: Path) -> Path:
    """The source tree without build outputs, environments or runs (what a clone holds)."""
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "*.so"))
    return dst


def _fresh_venv(path: Path) -> Path:
    """A venv that sees this environment's packages through a .pth file (appended after its own site-packages,
    so what is installed into it wins; .pth files of the borrowed folders, e.g. an editable dyngauss, are not
    run) and the compiler tools it would get from `pip install ninja`. Returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    py = path / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")])
    (Path(purelib) / "_borrowed_deps.pth").write_text("\n".join(p for p in ours if Path(p).is_dir()) + "\n")
    ninja = shutil.which("ninja") or str(Path(sys.executable).parent / "ninja")
    if Path(ninja).exists():
        (path / "bin" / "ninja").symlink_to(ninja)
    return path / "bin"


def _env(tmp: Path, venv_bin: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp / "home"),
               DYNGAUSS_CACHE=str(tmp / "cache"), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    (tmp / "home").mkdir(exist_ok=True)
    return env


def _pip_install(venv_bin: Path, target: Path, env: dict, cwd: Path) -> None:
    p = subprocess.run([str(venv_bin / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--ignore-installed", "--no-build-isolation", str(target)],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr


def _check_installed(venv: Path, venv_bin: Path, env: dict, cwd: Path) -> None:
    """The package, its kernel sources and configs come from the venv; `auto` picks the kernel on the CPU."""
    code = ("import warnings\n"
            "import torch, dyngauss, dyngauss.resources as r\n"
            "from dyngauss.render.api import resolve_backend\n"
            "from dyngauss.render.cpu_backend import KernelFallbackWarning\n"
            "warnings.simplefilter('error', KernelFallbackWarning)\n"
            "print(dyngauss.__file__); print(r.kernel_source_dir()); print(r.config_dir())\n"
            "print(resolve_backend('auto', torch.device('cpu')))\n")
    p = subprocess.run([str(venv_bin / "python"), "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    pkg_file, kernels, configs, backend = p.stdout.split()
    for path in (pkg_file, kernels, configs):
        assert Path(path).resolve().is_relative_to(venv.resolve()), (path, venv)
    assert Path(kernels).name == "cpu" and (Path(kernels) / "common.h").is_file()
    assert sorted(q.name for q in Path(configs).glob("*.yaml")) == sorted(q.name for q in ROOT.glob("configs/*.yaml"))
    assert backend == "cpu"
    h = subprocess.run([str(venv_bin / "dyngauss"), "--help"], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    assert h.returncode == 0 and "prepare-video" in h.stdout and "train" in h.stdout, h.stdout + h.stderr


def _train(venv_bin: Path, env: dict, cwd: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    """`dyngauss train` for 20 steps on a small built-in scene with the C++ kernel (render.backend=cpu)."""
    args = [str(venv_bin / "dyngauss"), "train", "render.backend=cpu", "train.iters=20", f"out={out}",
            "data.synthetic_resolution=32", "data.synthetic_train_frames=8", "model.num_points=300",
            "deform.width=32", "deform.depth=2", "train.progress=false", "train.save_every=0", "eval.lpips=false",
            *extra]
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "backend=cpu" in p.stdout, p.stdout
    assert "KernelFallbackWarning" not in p.stderr and "torch reference" not in p.stderr, p.stderr
    assert (cwd / out / "metrics.json").is_file() and list((cwd / out / "checkpoints").glob("*.pt"))
    return p


@pytest.mark.slow
def test_wheel_and_pip_install_train_with_the_cpp_kernel(tmp_path):
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the installed kernel cannot be built here")
    pytest.importorskip("setuptools", reason="building a wheel offline (--no-build-isolation) needs setuptools")
    src = _source_copy(tmp_path / "src")
    work = tmp_path / "work"
    work.mkdir()

    # 1. the wheel holds the kernel sources, the configs and the console command
    dist = tmp_path / "dist"
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                        "-w", str(dist), str(src)], cwd=work, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = dist.glob("dyngauss-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (ROOT / "kernels" / "cpu").iterdir():
        if f.suffix in (".cpp", ".h"):
            assert f"dyngauss/_kernels/cpu/{f.name}" in names, f.name
    for f in (ROOT / "configs").glob("*.yaml"):
        assert f"dyngauss/configs/{f.name}" in names, f.name
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "dyngauss = dyngauss.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()

    # 2. wheel -> fresh venv; the kernel is compiled from the installed sources (empty caches: HOME is tmp too)
    venv = tmp_path / "venv_wheel"
    vbin = _fresh_venv(venv)
    env = _env(tmp_path, vbin)
    _pip_install(vbin, wheel, env, work)
    _check_installed(venv, vbin, env, work)
    builds = list((tmp_path / "cache" / "kernels").glob("dyngauss_cpu_*/dyngauss_cpu_*.so"))
    assert len(builds) == 1
    ninja_file = (builds[0].parent / "build.ninja").read_text()
    assert f"-I{venv.resolve()}/lib/" in ninja_file  # compiled from the venv's copy of the sources
    _train(vbin, env, work, "run_wheel", "export.frames=3")
    assert (work / "run_wheel" / "ply" / "sequence.json").is_file()

    # 3. `pip install <source tree>` (not editable) -> another fresh venv; same kernel sources, same cached build
    venv2 = tmp_path / "venv_pip"
    vbin2 = _fresh_venv(venv2)
    env2 = _env(tmp_path, vbin2)
    _pip_install(vbin2, src, env2, work)
    _check_installed(venv2, vbin2, env2, work)
    _train(vbin2, env2, work, "run_pip", "export.enabled=false")
