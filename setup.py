"""dyngauss: dynamic 3D Gaussian splatting (CPU and GPU).

The C++ CPU rasterizer in kernels/cpu is JIT-compiled on first use into a persistent cache
(~/.cache/dyngauss/kernels, or $DYNGAUSS_CACHE/kernels), so installing needs no compiler step;
`python -c "from dyngauss.render import cpu_backend; cpu_backend.build_extension()"` prebuilds it.
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


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


setup(
    name="dyngauss",
    version="0.1.0",
    description="Dynamic 3D Gaussian splatting with SE(3) deformation fields, CPU and GPU",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dyngauss", "dyngauss.*"]),
    package_data={"dyngauss": []},
    install_requires=_requirements(),
    extras_require={"dev": ["pytest==9.2.0"]},
)
