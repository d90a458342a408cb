"""How long OpenMP's idle workers spin before they sleep: imported first by the mindformers package, since libgomp
reads the setting once, when loaded (importing mindspore loads it).

libgomp's default (GOMP_SPINCOUNT 300000 iterations, milliseconds here) keeps the workers of our kernels (cpu_*.cc)
busy-waiting on the cores that MindSpore's next operators need: the 8-layer benchmark model's training step took
1.2-1.3 s with it and 0.77-0.80 s with 1000 (2 cores). libgomp throttles the spinning by itself only once it manages
more threads than there are cores, as when torch's OpenMP threads share it (benchmarks that import torch)."""
import os

SPIN_COUNT = "1000"


def quiet_openmp_waits():
    """Shorten OpenMP's busy-wait unless the user chose a wait policy or spin count."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
