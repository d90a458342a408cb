"""Train Llama-style tokenizers from plain text files.

    python -m mindformers.tools.tokenizer_training --input a.txt b.txt --output tok.model --vocab_size 32000
    python -m mindformers.tools.tokenizer_training --input a.txt --output tokenizer.json --vocab_size 128256 \\
        --kind bpe

* kind `sentencepiece`: a Llama 1/2 sentencepiece BPE model (<unk>=0, <s>=1, </s>=2, no pad, byte
  fallback, split digits, identity normalization, whitespace kept as is) for LlamaTokenizer.
* kind `bpe`: a Llama 3 byte-level BPE tokenizer.json (regex pre-tokenizer, ByteLevel decoder,
  <|begin_of_text|> prepended) with the special tokens appended after the BPE vocab, for
  LlamaTokenizerFast.

Outputs are written under a temporary name and renamed, so a failed run leaves nothing behind.
"""
import os
import shutil
import sys
import tempfile

from mindformers.tools.errors import ConfigError, DataError, OneLineParser, exit_on_user_error

# Llama 3's split: English contractions, letters, 1-3 digit groups, punctuation runs, newlines, spaces.
LLAMA3_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SP_META_PIECES = 3  # <unk>, <s>, </s>
BYTE_PIECES = 256


def llama3_special_tokens(count):
    """Llama 3's special-token layout: bos, eos, reserved 0-3, header ids, reserved 4, eot, reserved 5..."""
    named = {6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "<|eot_id|>"}
    tokens, reserved = ["<|begin_of_text|>", "<|end_of_text|>"], 0
    for index in range(2, count):
        if index in named:
            tokens.append(named[index])
        else:
            tokens.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return tokens[:count]


def check_input_files(input_files):
    if isinstance(input_files, (str, os.PathLike)):
        input_files = [input_files]
    files = [os.fspath(path) for path in input_files or []]
    if not files:
        raise ConfigError("--input: expected at least one text file")
    for path in files:
        if not os.path.isfile(path):
            raise DataError(f"--input: text file not found: {path}")
        if os.path.getsize(path) == 0:
            raise DataError(f"--input: text file is empty: {path}")
    return files


def check_vocab_size(vocab_size, minimum, why):
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ConfigError(f"--vocab_size: expected an integer, got {vocab_size!r}")
    if vocab_size < minimum:
        raise ConfigError(f"--vocab_size: {vocab_size} is too small; expected vocab_size >= {minimum} ({why})")


def first_line(error):
    """The human part of a library error (sentencepiece prefixes it with a source location and a check)."""
    text = str(error).strip()
    line = text.splitlines()[-1] if text else type(error).__name__
    return line.rsplit("] ", 1)[-1]


def publish(tmp_path, final_path):
    """Rename a finished temp file into place with the permissions a normal write would give."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    os.replace(tmp_path, final_path)


def train_sentencepiece(input_files, model_prefix, vocab_size, character_coverage=0.99995, num_threads=None,
                        max_sentence_length=16384, input_sentence_size=0, verbose=False):
    """Train a Llama-style sentencepiece BPE model; returns the path of `<model_prefix>.model`.

    A `.model` suffix on model_prefix is accepted and dropped. `<model_prefix>.vocab` is written too.
    """
    import sentencepiece as spm

    files = check_input_files(input_files)
    check_vocab_size(vocab_size, SP_META_PIECES + BYTE_PIECES + 1,
                     f"{SP_META_PIECES} special pieces, {BYTE_PIECES} byte pieces and the text's characters")
    model_prefix = os.fspath(model_prefix)
    if model_prefix.endswith(".model"):
        model_prefix = model_prefix[:-len(".model")]
    folder = os.path.dirname(os.path.abspath(model_prefix))
    os.makedirs(folder, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".sp_train_", dir=folder)
    tmp_prefix = os.path.join(tmp_dir, "sp")
    try:
        try:
            spm.SentencePieceTrainer.train(
                input=files, model_prefix=tmp_prefix, vocab_size=vocab_size, model_type="bpe",
                character_coverage=character_coverage, byte_fallback=True, split_digits=True,
                split_by_unicode_script=True, split_by_whitespace=True, split_by_number=True,
                allow_whitespace_only_pieces=True, remove_extra_whitespaces=False, add_dummy_prefix=True,
                normalization_rule_name="identity", max_sentencepiece_length=16,
                unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
                max_sentence_length=max_sentence_length, input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True, num_threads=num_threads or min(os.cpu_count() or 1, 8),
                minloglevel=0 if verbose else 2)
        except RuntimeError as error:  # e.g. "Vocabulary size is smaller than required_chars. 259 vs 300."
            raise ConfigError(f"--vocab_size: sentencepiece cannot train {vocab_size} pieces from "
                              f"{', '.join(files)}: {first_line(error)}") from None
        stamp_model_prefix(tmp_prefix + ".model", model_prefix)
        for suffix in (".vocab", ".model"):  # the .model last: its presence means the pair is complete
            publish(tmp_prefix + suffix, model_prefix + suffix)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return model_prefix + ".model"


def stamp_model_prefix(path, model_prefix):
    """The model records its training prefix; write the final one so equal runs give equal bytes."""
    from sentencepiece import sentencepiece_model_pb2

    with open(path, "rb") as stream:
        proto = sentencepiece_model_pb2.ModelProto.FromString(stream.read())
    proto.trainer_spec.model_prefix = os.path.basename(model_prefix)
    with open(path, "wb") as stream:
        stream.write(proto.SerializeToString())


def train_bpe_tokenizer_json(input_files, output_path, vocab_size, num_special_tokens=256, min_frequency=2,
                             show_progress=False):
    """Train a Llama 3 style byte-level BPE tokenizer.json of `vocab_size` ids in all.

    The BPE part gets `vocab_size - num_special_tokens` ids; the special tokens follow it, as
    Llama 3's 128000 + 256 layout does. Returns output_path.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    files = check_input_files(input_files)
    if not isinstance(num_special_tokens, int) or num_special_tokens < 2:
        raise ConfigError(f"--num_special_tokens: expected an integer >= 2 (bos and eos), got {num_special_tokens!r}")
    check_vocab_size(vocab_size, BYTE_PIECES + 1 + num_special_tokens,
                     f"{BYTE_PIECES} byte tokens, at least one merge and {num_special_tokens} special tokens")
    specials = llama3_special_tokens(num_special_tokens)

    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - num_special_tokens, min_frequency=min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
                                  show_progress=show_progress)
    try:
        tokenizer.train(files, trainer)
    except Exception as error:  # the Rust side reports unreadable input (e.g. not UTF-8) as a plain Exception
        raise DataError(f"--input: cannot train on {', '.join(files)}: {first_line(error)}") from None
    tokenizer.add_special_tokens(specials)
    bos = specials[0]
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1",
                                      special_tokens=[(bos, tokenizer.token_to_id(bos))]),
    ])
    output_path = os.fspath(output_path)
    folder = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(prefix=".tokenizer_", suffix=".json", dir=folder)
    os.close(handle)
    try:
        tokenizer.save(tmp_path)
        publish(tmp_path, output_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return output_path


def parse_args(argv=None):
    parser = OneLineParser(prog="tokenizer_training", description="Train a Llama-style tokenizer from text files.")
    parser.add_argument("--input", nargs="+", required=True, help="UTF-8 text files, one document/paragraph per line")
    parser.add_argument("--output", required=True,
                        help="sentencepiece: model prefix or PATH.model; bpe: the tokenizer.json path")
    parser.add_argument("--vocab_size", type=int, required=True, help="total number of ids, special tokens included")
    parser.add_argument("--kind", choices=("sentencepiece", "bpe"), default="sentencepiece")
    parser.add_argument("--num_special_tokens", type=int, default=256, help="bpe only: Llama 3 special tokens")
    parser.add_argument("--character_coverage", type=float, default=0.99995, help="sentencepiece only")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if args.kind == "sentencepiece":
        path = train_sentencepiece(args.input, args.output, args.vocab_size,
                                   character_coverage=args.character_coverage)
    else:
        path = train_bpe_tokenizer_json(args.input, args.output, args.vocab_size,
                                        num_special_tokens=args.num_special_tokens,
                                        show_progress=sys.stderr.isatty())  # a bar for people, not for logs
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
