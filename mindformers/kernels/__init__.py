"""CPU kernels written in C++ here and compiled on first use (see build.py); each has a composed-primitive fallback."""
