"""Entry point: python run_mindformer.py --config CONFIG --run_mode {train,finetune,eval,predict} [flags]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mindformers.run import main  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(main())
