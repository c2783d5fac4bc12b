"""dyngauss: dynamic 3D Gaussian splatting (CPU and GPU).

The C++ CPU rasterizer in kernels/cpu is JIT-compiled on first use into a persistent cache
(~/.cache/dyngauss/kernels, or $DYNGAUSS_CACHE/kernels), so installing needs no compiler step;
`python -c "from dyngauss.render import cpu_backend; cpu_backend.build_extension()"` prebuilds it.

kernels/cpu and configs/ at the repository root are the only copies of the kernel sources and the configs. A
wheel or a non-editable `pip install .` gets them copied into the package (dyngauss/_kernels/cpu,
dyngauss/configs) by the build_py step below; an editable install (`pip install -e .`) reads them where they
are (dyngauss/resources.py looks in both places). requirements.txt is the pin list; the install requirements
are read from it (torch relaxed).
"""
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

# (folder at the repository root, folder inside the built package, file patterns)
SHIPPED = (
    ("kernels/cpu", "dyngauss/_kernels/cpu", ("*.cpp", "*.h")),
    ("configs", "dyngauss/configs", ("*.yaml",)),
)


def _version() -> str:
    """dyngauss.__version__, read from the source (the one place the version is written)."""
    text = (ROOT / "dyngauss" / "__init__.py").read_text()
    m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", text, re.M)
    if not m:
        raise RuntimeError("dyngauss/__init__.py has no __version__ = '...' line")
    return m.group(1)


def _requirements() -> list[str]:
    reqs = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("torch=="):
            line = "torch>=2.4"  # any recent build: CPU wheel on laptops, CUDA wheel on GPU machines
        reqs.append(line)
    return reqs


def _shipped_files() -> list[tuple[Path, str]]:
    """(source file, path inside the build folder) for every shipped data file; fails when a folder is empty."""
    out = []
    for src, dst, patterns in SHIPPED:
        files = sorted({p for pat in patterns for p in (ROOT / src).glob(pat) if p.is_file()})
        if not files:
            raise RuntimeError(f"nothing to ship in {ROOT / src} (patterns {patterns}): incomplete source tree?")
        out += [(p, f"{dst}/{p.name}") for p in files]
    return out


class BuildPyWithData(build_py):
    """build_py that also copies kernels/cpu and configs/ into the built package (wheels, `pip install .`).

    The built package folder is emptied first, so a module or data file removed from the repository never
    lingers in a wheel built from a tree that was built before. Editable installs skip both steps: they read
    the repository folders directly."""

    def run(self) -> None:
        copy = not (getattr(self, "editable_mode", False) or getattr(self, "inplace", False))
        if copy:
            shutil.rmtree(Path(self.build_lib) / "dyngauss", ignore_errors=True)
        super().run()
        if not copy:
            return
        for src, rel in _shipped_files():
            target = Path(self.build_lib) / rel
            self.mkpath(str(target.parent))
            self.copy_file(str(src), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [] if getattr(self, "editable_mode", False) or getattr(self, "inplace", False) else [
            str(Path(self.build_lib) / rel) for _, rel in _shipped_files()]
        return super().get_outputs(include_bytecode) + extra


setup(
    name="dyngauss",
    version=_version(),
    description="Dynamic 3D Gaussian splatting with SE(3) deformation fields, CPU and GPU",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dyngauss", "dyngauss.*"]),
    install_requires=_requirements(),
    extras_require={"dev": ["pytest==9.2.0"]},
    entry_points={"console_scripts": ["dyngauss = dyngauss.cli.main:main"]},
    cmdclass={"build_py": BuildPyWithData},
    zip_safe=False,  # the kernel sources and configs are read as files
)
