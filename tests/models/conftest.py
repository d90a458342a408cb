"""Model tests start in PyNative (a test that needs graph mode switches to it itself; the next starts over)."""
import mindspore as ms
import pytest


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)
