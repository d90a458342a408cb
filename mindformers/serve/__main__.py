"""python -m mindformers.serve --config CONFIG --load_checkpoint CKPT [--vocab_file F] [--host H] [--port P]"""
import sys

from mindformers.serve.launcher import main

if __name__ == "__main__":
    sys.exit(main())
