"""One conversation -> (input_ids, labels) rows rendered with an fschat (FastChat) prompt template or with the
model folder's own Jinja chat template (tokenizer_config.json's chat_template, `--template tokenizer`).

The prompt text is exactly what fschat's Conversation.get_prompt() (or transformers' apply_chat_template) gives,
so a model finetuned on these rows sees at inference the same text that a chat front end builds. Only assistant
replies are learned: every other token (system message, user turns, role tags, padding) has the ignore id in
`labels`.

Masking works on the rendered text: for each assistant reply, the template is rendered once with the reply
left open (ending in e.g. "ASSISTANT:") and once with it filled in; the characters between the two
renderings are the reply (with the template's end-of-turn separator, e.g. "</s>", which teaches the model
to stop). The text is then tokenized span by span, so label boundaries fall exactly on token boundaries.

Row layout matches the pretraining rows: seq_length + 1 tokens, [bos] first when the family adds bos (a Jinja
template writes its own bos, so none is added for it). LlamaForCausalLM feeds
input_ids[:-1] and learns labels[1:], so labels[i] is the target for the token that follows position i-1:
labels are aligned with input_ids, not shifted.
"""
import os

import numpy as np

from mindformers.models.chat_template import ChatTemplateConversation, ChatTemplateRefused
from mindformers.tools.dataset_preprocess.conversation_records import UnusableRecord
from mindformers.tools.errors import ConfigError, DataError

IGNORE_TOKEN_ID = -100
TOKENIZER_TEMPLATE = "tokenizer"  # --template value: the model folder's own chat_template


def load_template(name, flag="--template", tokenizer=None):
    """An fschat Conversation by name, or a ChatTemplateConversation for the tokenizer's Jinja template
    (`tokenizer`) or a .jinja file."""
    if name == TOKENIZER_TEMPLATE:
        try:
            source = tokenizer.get_chat_template()
        except ConfigError as error:
            raise ConfigError(f"{flag} {TOKENIZER_TEMPLATE}: {error}") from None
        return ChatTemplateConversation(source, tokenizer.special_tokens_map, name=TOKENIZER_TEMPLATE)
    if name.endswith(".jinja"):
        if not os.path.isfile(name):
            raise DataError(f"{flag}: chat template file not found: {name}")
        with open(name, encoding="utf-8") as stream:
            source = stream.read()
        return ChatTemplateConversation(source, tokenizer.special_tokens_map if tokenizer else {}, name=name)
    try:
        from fastchat.conversation import conv_templates, get_conv_template
    except ImportError as error:
        raise ConfigError(f"{flag}: the qa dataset type needs fschat (pip install fschat) ({error})") from None
    if name not in conv_templates:
        close = sorted(n for n in conv_templates if name.split("_")[0].lower() in n.lower())[:8]
        raise ConfigError(f"{flag}: unknown fschat template {name!r}"
                          f"{' (similar: ' + ', '.join(close) + ')' if close else ''}; "
                          f"'{TOKENIZER_TEMPLATE}' uses the model folder's own chat_template")
    return get_conv_template(name)


def render_spans(template, system, messages):
    """The rendered prompt cut into [(text, is_assistant), ...] whose texts concatenate to the whole prompt."""
    conv = template.copy()
    if system is not None:
        conv.set_system_message(system)
    spans, done = [], 0
    for speaker, text in messages:
        if speaker == 1:
            conv.append_message(conv.roles[1], None)
            open_prompt = conv.get_prompt()
            conv.messages[-1][1] = text
            closed_prompt = conv.get_prompt()
            # the reply starts after the role tag; leading blanks belong to the prompt side (the chat front end
            # sends "ASSISTANT:" and the model continues with " reply")
            start = len(open_prompt)
            if not closed_prompt.startswith(open_prompt.rstrip()) or start < done:
                raise ConfigError(f"--template {template.name}: its rendering is not prefix-stable (the text "
                                  "before a reply changes once the reply is filled in), so replies cannot be "
                                  "located for label masking; choose another template")
            spans.append((closed_prompt[done:start], False))
            spans.append((closed_prompt[start:], True))
            done = len(closed_prompt)
        else:
            conv.append_message(conv.roles[0], text)
    final = conv.get_prompt()
    if not final.startswith("".join(text for text, _ in spans)):
        raise ConfigError(f"--template {template.name}: rendering is not prefix-stable; choose another template")
    if final[done:]:
        spans.append((final[done:], False))
    return spans


class ConversationTokenizer:
    """Turns (system, messages) into int32 (input_ids, labels) of `row_length` tokens each."""

    def __init__(self, tokenizer, template, row_length, add_bos=None, pad_token_id=None,
                 ignore_token_id=IGNORE_TOKEN_ID):
        self.tokenizer = tokenizer
        self.template = template
        self.row_length = row_length
        if add_bos is None:  # a Jinja template writes bos itself; fschat templates rely on the tokenizer adding it
            add_bos = tokenizer.add_bos_token and not isinstance(template, ChatTemplateConversation)
        self.bos = tokenizer.text_start_ids() if add_bos else []
        if pad_token_id is None:
            pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_token_id = pad_token_id
        self.ignore_token_id = ignore_token_id
        self.truncated = 0  # rows that lost tokens to seq_length

    def encode_span(self, text, first):
        """Token ids of one span. Later spans are encoded as continuations (no sentencepiece dummy prefix), as the
        tokenizer treats them inside the whole prompt."""
        if first:
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode_continuation(text)

    def encode(self, system, messages):
        ids, learn = list(self.bos), [False] * len(self.bos)
        try:
            spans = render_spans(self.template, system, messages)
        except ChatTemplateRefused as error:  # e.g. a system prompt for a template without a system role
            raise UnusableRecord(f"refused by the template ({str(error).split(': ', 1)[-1]})") from None
        for index, (text, is_assistant) in enumerate(spans):
            if not text:
                continue
            piece = self.encode_span(text, first=index == 0)
            ids += piece
            learn += [is_assistant] * len(piece)
            if is_assistant and piece and piece[-1] in self.bos:
                learn[-1] = False  # llama-2 templates open the next turn with <s> inside the reply's span
        if len(ids) > self.row_length:
            self.truncated += 1
            ids, learn = ids[:self.row_length], learn[:self.row_length]
        # position 0 is never a target (nothing precedes it), so a reply must keep a token past it
        if not any(learn[1:]):
            raise UnusableRecord("no assistant token within seq_length")
        pad = self.row_length - len(ids)
        input_ids = np.asarray(ids + [self.pad_token_id] * pad, dtype=np.int32)
        labels = np.where(np.asarray(learn + [False] * pad), input_ids, self.ignore_token_id).astype(np.int32)
        return input_ids, labels
