"""transformers and torch are test-only: the library imports, builds, saves, loads and converts without them."""
import subprocess
import sys
import textwrap

from tests.e2e.helpers import REPO

SCRIPT = textwrap.dedent("""
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, Blocker())
    import numpy as np
    import mindspore as ms
    import mindformers, convert_weight
    from mindformers import LlamaConfig, LlamaForCausalLM
    from mindformers.checkpoint import hf_convert
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    config = LlamaConfig(seq_length=8, hidden_size=16, num_layers=1, num_heads=2, vocab_size=32,
                         intermediate_size=24, compute_dtype="float32")
    model = LlamaForCausalLM(config)
    out = sys.argv[1]
    model.save_pretrained(out + "/hf", hf_format=True)
    convert_weight.main(["--model", "llama", "--input_path", out + "/hf", "--output_path", out + "/x.ckpt"])
    again = LlamaForCausalLM.from_pretrained(out + "/x.ckpt")
    ids = ms.Tensor(np.arange(8).reshape(1, 8), ms.int32)
    assert (again(ids).asnumpy() == model.set_train(False)(ids).asnumpy()).all()
    assert "torch" not in sys.modules and "transformers" not in sys.modules
    print("ok")
""")


def test_library_works_with_torch_and_transformers_unimportable(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={"GLOG_v": "3", "PATH": "/usr/bin:/bin", "PYTHONPATH": REPO})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
