"""pip install -e ".[test]" installs the trainer and everything its tests need."""
from setuptools import find_packages, setup

setup(
    name="mindformers-llama",
    version="0.1.0",
    description="A YAML-config-driven trainer for Llama-family LLMs on MindSpore",
    packages=find_packages(include=["mindformers", "mindformers.*"]),
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
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "torch==2.13.0",
            "transformers>=4.40",
        ],
    },
    entry_points={"console_scripts": ["mindformers-run=mindformers.run:main"]},
)
