"""Shared fixtures. Each group lives in its own module under tests/fixtures; this file only gathers them."""
import os

os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's C++ logging out of test output

from tests.fixtures.tokenizers import *  # noqa: E402,F401,F403
from tests.fixtures.data import *  # noqa: E402,F401,F403
from tests.fixtures.instruction_data import *  # noqa: E402,F401,F403
from tests.fixtures.cpu_kernels import *  # noqa: E402,F401,F403

import mindspore as ms  # noqa: E402

# Op by op on CPU, waiting for each op is faster than queueing it (as build_context does for PyNative runs on CPU)
ms.set_context(pynative_synchronize=True)
