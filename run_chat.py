"""Interactive chat with a model of a YAML config: python run_chat.py --config CONFIG --load_checkpoint CKPT."""
import sys

from mindformers.run import OneLineParser, load_config_with
from mindformers.tools.errors import exit_on_user_error


def build_parser():
    parser = OneLineParser(prog="run_chat.py", description="Multi-turn chat (fschat template, streamed answers; "
                                                           "/clear forgets the conversation, /exit quits).")
    add = parser.add_argument
    add("--config", required=True, help="YAML config (model and processor.tokenizer)")
    add("--load_checkpoint", default=None, help="checkpoint file or folder")
    add("--vocab_file", default=None, help="tokenizer file, overriding processor.tokenizer.vocab_file")
    add("--template", default=None, help="fschat conversation template (default llama-2), or 'tokenizer' for the "
                                         "model folder's own Jinja chat_template")
    add("--max_new_tokens", type=int, default=None)
    add("--device_target", choices=("Ascend", "CPU", "GPU"), default=None)
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    # The model, tokenizer and context come from the YAML exactly as run_mindformer.py reads it.
    config = load_config_with(args.config, load_checkpoint=args.load_checkpoint, vocab_file=args.vocab_file,
                              device_target=args.device_target)
    import mindformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    from mindformers.core.context import build_context  # pylint: disable=import-outside-toplevel
    from mindformers.generation.chat import DEFAULT_TEMPLATE, ChatSession, chat_loop  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.trainer.inference_model import build_inference_model  # noqa: E501 pylint: disable=import-outside-toplevel
    build_context(config)
    _, network, tokenizer = build_inference_model(config, "chat")
    session = ChatSession(network, tokenizer, args.template or DEFAULT_TEMPLATE, max_new_tokens=args.max_new_tokens)
    chat_loop(session, sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
