"""A multi-turn chat over a causal LM with an fschat conversation template or the model folder's own Jinja chat
template (`--template tokenizer`), answers streamed as they come."""
import sys

from mindformers.generation.streamers import TextStreamer
from mindformers.models.chat_template import ChatTemplateConversation
from mindformers.tools.errors import ConfigError

DEFAULT_TEMPLATE = "llama-2"
TOKENIZER_TEMPLATE = "tokenizer"


def new_conversation(template, tokenizer=None):
    if template == TOKENIZER_TEMPLATE:
        try:
            return ChatTemplateConversation(tokenizer.get_chat_template(), tokenizer.special_tokens_map)
        except ConfigError as error:
            raise ConfigError(f"--template {TOKENIZER_TEMPLATE}: {error}") from None
    from fastchat.conversation import get_conv_template  # pylint: disable=import-outside-toplevel
    try:
        return get_conv_template(template)
    except KeyError:
        raise ConfigError(f"--template: unknown fschat conversation template {template!r} ('{TOKENIZER_TEMPLATE}' "
                          "uses the model folder's own chat_template)") from None


def prompt_ids(tokenizer, conversation):
    """A Jinja template writes bos and every control token itself (transformers tokenizes its text without adding
    any); fschat text marks them as <s> / </s> literals."""
    if isinstance(conversation, ChatTemplateConversation):
        return tokenizer.encode(conversation.get_prompt(), add_special_tokens=False)
    return encode_with_specials(tokenizer, conversation.get_prompt())


def encode_with_specials(tokenizer, text):
    """Token ids of a template's text, whose literal <s> / </s> stand for the bos / eos ids (not for text)."""
    specials = {tok: tid for tok, tid in ((tokenizer.bos_token, tokenizer.bos_token_id),
                                          (tokenizer.eos_token, tokenizer.eos_token_id)) if tok and tid is not None}
    ids = [] if tokenizer.bos_token and text.startswith(tokenizer.bos_token) else tokenizer.text_start_ids()
    piece = ""
    position = 0
    while position < len(text):
        token = next((t for t in specials if text.startswith(t, position)), None)
        if token is None:
            piece += text[position]
            position += 1
            continue
        if piece.strip():
            ids += tokenizer.encode(piece.strip(), add_special_tokens=False)
        piece = ""
        ids.append(specials[token])
        position += len(token)
    if piece.strip():
        ids += tokenizer.encode(piece.strip(), add_special_tokens=False)
    return ids


class ChatSession:
    """Holds the conversation; `answer(text)` streams and returns the model's reply; `clear()` forgets."""

    def __init__(self, model, tokenizer, template=DEFAULT_TEMPLATE, output=None, **generate_options):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.output = output or sys.stdout
        self.generate_options = generate_options
        self.conversation = new_conversation(template, tokenizer)

    def clear(self):
        self.conversation = new_conversation(self.template, self.tokenizer)

    def prompt_ids(self):
        """The conversation's tokens, dropping the oldest turns while they leave no room to answer."""
        limit = self.model.config.seq_length - 1
        while True:
            ids = prompt_ids(self.tokenizer, self.conversation)
            if len(ids) < limit or len(self.conversation.messages) <= 2:
                return ids
            del self.conversation.messages[:2]

    def answer(self, text):
        user, assistant = self.conversation.roles
        self.conversation.append_message(user, text)
        self.conversation.append_message(assistant, None)
        ids = self.prompt_ids()
        if len(ids) >= self.model.config.seq_length:
            del self.conversation.messages[-2:]
            raise ConfigError(f"chat: this message is {len(ids)} tokens with its template, more than seq_length "
                              f"{self.model.config.seq_length}")
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, file=self.output, skip_special_tokens=True)
        output = self.model.generate([ids], streamer=streamer, tokenizer=self.tokenizer, **self.generate_options)[0]
        reply = self.tokenizer.decode(output[len(ids):], skip_special_tokens=True).strip()
        self.conversation.update_last_message(reply)
        return reply


def chat_loop(session, lines, output=None):
    """Read user lines until /exit or end of input; /clear starts a new conversation."""
    output = output or sys.stdout
    print("chat: type a message; /clear forgets the conversation, /exit quits", file=output, flush=True)
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/clear":
            session.clear()
            print("(conversation cleared)", file=output, flush=True)
            continue
        print("assistant: ", end="", file=output, flush=True)
        try:
            session.answer(text)
        except ConfigError as error:
            print(f"\nerror: {error}", file=output, flush=True)
