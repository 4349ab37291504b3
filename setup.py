"""Builds detaccel's compiled operators (``detaccel._C``) against the installed torch.

CUDA kernels are compiled when torch has CUDA support and ``nvcc`` is found
(``CUDA_HOME``, ``/usr/local/cuda`` or ``PATH``); otherwise only the CPU kernels
are built, and the build says so. ``DETACCEL_WITH_CUDA=0`` forces a CPU-only
build, ``DETACCEL_WITH_CUDA=1`` makes a missing CUDA toolchain an error.
``DETACCEL_CUDA_ARCH_LIST`` (default ``TORCH_CUDA_ARCH_LIST`` or a portable list)
names the GPU architectures. ``DETACCEL_SKIP_BUILD=1`` installs the Python
package without compiling (used after ``setup.py build_ext --inplace``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


def _find_cuda_home() -> str | None:
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and (Path(candidate) / "bin" / "nvcc").exists():
            return candidate
    nvcc = shutil.which("nvcc")
    return str(Path(nvcc).resolve().parent.parent) if nvcc else None


def _want_cuda(torch_module) -> bool:
    request = os.environ.get("DETACCEL_WITH_CUDA", "auto").lower()
    if request in ("0", "false", "no", "off"):
        print("detaccel: DETACCEL_WITH_CUDA=0, building the CPU kernels only", file=sys.stderr)
        return False
    reasons = []
    if torch_module.version.cuda is None:
        reasons.append("the installed torch has no CUDA support")
    cuda_home = _find_cuda_home()
    if cuda_home is None:
        reasons.append("nvcc was not found (set CUDA_HOME)")
    if reasons:
        message = "detaccel: building the CPU kernels only: " + "; ".join(reasons)
        if request in ("1", "true", "yes", "on"):
            raise RuntimeError(message + " (DETACCEL_WITH_CUDA=1 asks for CUDA)")
        print(message, file=sys.stderr)
        return False
    # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
    os.environ["CUDA_HOME"] = cuda_home
    os.environ.setdefault(
        "TORCH_CUDA_ARCH_LIST", os.environ.get("DETACCEL_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
    )
    print(f"detaccel: building CPU and CUDA kernels with {cuda_home}/bin/nvcc", file=sys.stderr)
    return True


def _extensions():
    import torch

    with_cuda = _want_cuda(torch)
    from torch.utils import cpp_extension

    sources = [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.cpp")) + sorted(CSRC.glob("cpu/*.cpp"))]
    extra = {"cxx": ["-O3", "-fopenmp"]}
    macros = []
    if with_cuda:
        sources += [str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("cuda/*.cu"))]
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        macros.append(("DETACCEL_WITH_CUDA", None))
        extension_type = cpp_extension.CUDAExtension
    else:
        extension_type = cpp_extension.CppExtension
    return [
        extension_type(
            name="detaccel._C",
            sources=sources,
            include_dirs=[str(CSRC)],
            define_macros=macros,
            extra_compile_args=extra,
            extra_link_args=["-fopenmp"],
        )
    ], cpp_extension.BuildExtension.with_options(use_ninja=True)


if os.environ.get("DETACCEL_SKIP_BUILD") == "1":
    setup()
else:
    ext_modules, build_ext = _extensions()
    setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
