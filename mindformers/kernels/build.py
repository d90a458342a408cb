"""Compiles a kernel's C++ source (next to this file) into a shared library on first use, cached across runs.

The library goes to MINDFORMERS_KERNEL_CACHE (default ~/.cache/mindformers/kernels) under a name keyed by a hash of
the source, the compiler command, the compiler's version and the CPU's feature flags (the code is built for this
CPU with -march=native), written under a temporary name and renamed into place, so concurrent first uses and a
killed build never leave a half-written library. Without a C++ compiler (CXX, else g++), or with MindSpore's
oneDNN missing, or when the build fails, `library` returns None once with a warning and callers use their
composed-primitive path. MINDFORMERS_CPU_KERNELS=0 turns the kernels off."""
import functools
import glob
import hashlib
import os
import shutil
import subprocess

from mindformers.checkpoint.atomic import atomic_files
from mindformers.tools.logger import logger

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
# -ffast-math lets GCC vectorise the row reductions and call glibc's vector expf (measured: the forward at seq 2048
# takes 0.35 s without it, 0.10 s with it); the kernel keeps every value finite, as finite-math assumes.
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
# GCC vectorises 256 bits wide even where AVX-512 is there (and calls the 8-wide expf); 512 bits took the forward
# at seq 2048 from 50 to 44 CPU-ms on an AVX-512 host, the backward from 95-99 to 92-94
WIDE_VECTORS = "-mprefer-vector-width=512"


# headers every kernel may include; hashed with each source so that changing one rebuilds the kernels
HEADERS = ("kernel_common.h",)


def read_source(name):
    with open(os.path.join(SOURCE_DIR, name), "rb") as source:
        return source.read()


def cache_dir():
    return os.environ.get("MINDFORMERS_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                         "mindformers", "kernels")


def compiler():
    """The C++ compiler's path, or None."""
    return shutil.which(os.environ.get("CXX") or "g++")


def onednn_dir():
    """The folder of the oneDNN library MindSpore ships (its CPU kernels use it; ours take its sgemm), or None."""
    import mindspore  # pylint: disable=import-outside-toplevel
    lib = os.path.join(os.path.dirname(mindspore.__file__), "lib")
    return lib if glob.glob(os.path.join(lib, "libdnnl.so.3")) else None


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return ""


def flags():
    """The compiler flags for this CPU."""
    return FLAGS + ([WIDE_VECTORS] if "avx512f" in cpu_flags().split() else [])


def kernels_enabled():
    return os.environ.get("MINDFORMERS_CPU_KERNELS", "1") != "0"


def serves(source_name, dtypes):
    """Whether the kernel of `source_name` can compute in `dtypes` here: not turned off (MINDFORMERS_CPU_KERNELS=0),
    on CPU, float32 only, and its library built (compiling it on first use)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    return (kernels_enabled() and ms.get_context("device_target") == "CPU"
            and all(dtype == ms.float32 for dtype in dtypes) and library(source_name) is not None)


def one_value(*shapes):  # pylint: disable=unused-argument
    """out_shape of a Custom op whose output is one value (the sum kernel's result, the update kernel's token)."""
    return [1]


def float32(*dtypes):  # pylint: disable=unused-argument
    """out_dtype of a Custom op whose output is float32 whatever its inputs."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    return ms.float32


def two_float32(*dtypes):  # pylint: disable=unused-argument
    """out_dtype of a Custom op with two float32 outputs."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    return ms.float32, ms.float32


def kernel_threads():
    """The kernels' OpenMP threads: MindSpore's own CPU thread count (context.runtime_num_threads), so that the
    kernels and MindSpore's kernels share one budget (msrun workers on one host each take their share, not every
    core); 0 lets OpenMP decide."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    return ms.get_context("runtime_num_threads") or 0


@functools.lru_cache(maxsize=None)
def library(source_name):
    """The path of the compiled `source_name` (a .cc file in this folder), building it when not cached; or None."""
    cxx, lib = compiler(), onednn_dir()
    if cxx is None or lib is None:
        logger.warning("%s: %s; using MindSpore's own operators instead", source_name,
                       "no C++ compiler (g++ or $CXX) found" if cxx is None else "MindSpore's oneDNN not found")
        return None
    try:
        code = b"".join(read_source(name) for name in (source_name,) + HEADERS)
    except OSError as missing:
        logger.warning("%s: %s; using MindSpore's own operators instead", source_name, missing)
        return None
    link = [f"-L{lib}", "-l:libdnnl.so.3", f"-Wl,-rpath,{lib}"]
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        version = ""
    key = hashlib.sha256(b"\0".join([code, " ".join([cxx] + flags() + link).encode(), version.encode(),
                                     cpu_flags().encode()])).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"{os.path.splitext(source_name)[0]}-{key}.so")
    if os.path.exists(path):
        return path
    try:
        with atomic_files(path) as (temp,):
            result = subprocess.run([cxx, *flags(), "-o", temp, os.path.join(SOURCE_DIR, source_name), *link],
                                    capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
    except (OSError, RuntimeError) as failure:
        logger.warning("%s: building the kernel failed (%s); using MindSpore's own operators instead",
                       source_name, failure)
        return None
    return path
