"""A model folder's chat template (Jinja, as in tokenizer_config.json) rendered as transformers renders it.

The environment matches what chat templates on the hub are written for: a sandbox, `trim_blocks` and
`lstrip_blocks`, loop controls (`break` / `continue`), a `tojson` filter that keeps non-ASCII text, the
`raise_exception` and `strftime_now` functions, and the `{% generation %}` block (its body is rendered as is).
Templates come from downloaded folders, so they only ever run inside Jinja's immutable sandbox.
"""
import datetime
import functools
import json

from mindformers.tools.errors import ConfigError

# Appended to the final message for continue_final_message, then everything from it on is cut away.
CONTINUE_MARK = "\u2063MINDFORMERS_CONTINUE\u2063"


class TemplateRaised(Exception):
    """raise_exception(...) called by a template, inside rendering."""


class ChatTemplateRefused(ConfigError):
    """The template refused these messages with raise_exception (e.g. 'System role not supported')."""


def _raise_exception(message):
    raise TemplateRaised(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes HTML characters, which would change the prompt text.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def compile_template(source):
    """The compiled template (cached: preprocessing renders the same template for every record)."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """`{% generation %}...{% endgeneration %}` marks what the assistant writes; rendered as its body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        @staticmethod
        def _body(caller):
            return caller()

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[GenerationBlock, loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"chat_template: line {error.lineno}: not a valid Jinja template ({error.message})") \
            from None


def clean_messages(messages):
    """Messages as plain dicts, keys whose value is None dropped (as transformers passes them to templates)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConfigError("chat: expected a non-empty list of {'role': ..., 'content': ...} messages")
    cleaned = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ConfigError(f"chat: message {index}: expected a mapping with 'role' and 'content', got {message!r}")
        cleaned.append({key: value for key, value in message.items() if value is not None})
    return cleaned


def render_chat(source, messages, add_generation_prompt=False, continue_final_message=False, tools=None,
                documents=None, **variables):
    """The prompt text the template makes of `messages`; `variables` are the special tokens and template options.

    continue_final_message leaves the last message open (the model continues it) instead of closing the turn.
    """
    import jinja2

    if add_generation_prompt and continue_final_message:
        raise ConfigError("chat: add_generation_prompt and continue_final_message exclude each other")
    messages = clean_messages(messages)
    if continue_final_message:
        final = messages[-1].get("content")
        if not isinstance(final, str):
            raise ConfigError("chat: continue_final_message needs a final message with text content")
        messages[-1] = dict(messages[-1], content=final + CONTINUE_MARK)
    try:
        text = compile_template(source).render(messages=messages, tools=tools, documents=documents,
                                               add_generation_prompt=add_generation_prompt, **variables)
    except TemplateRaised as error:
        raise ChatTemplateRefused(f"chat_template: {error}") from None
    except jinja2.TemplateError as error:
        raise ConfigError(f"chat_template: {type(error).__name__}: {error}") from None
    if continue_final_message:
        if CONTINUE_MARK not in text:
            raise ConfigError("chat_template: continue_final_message: the template drops the final message's text")
        text = text[:text.rindex(CONTINUE_MARK)]
    return text


class ChatTemplateConversation:
    """fschat's Conversation interface over a Jinja chat template, so preprocessing and chat use either the same way.

    Messages are [role, text] pairs with the roles 'user' and 'assistant'; a last message whose text is None is the
    open assistant turn (rendered with add_generation_prompt).
    """

    roles = ("user", "assistant")

    def __init__(self, source, variables, name="tokenizer"):
        self.source, self.variables, self.name = source, dict(variables), name
        self.system_message = None
        self.messages = []
        compile_template(source)  # a syntax error shows now, not at the first record

    def set_system_message(self, text):
        self.system_message = text

    def append_message(self, role, text):
        self.messages.append([role, text])

    def update_last_message(self, text):
        self.messages[-1][1] = text

    def copy(self):
        clone = ChatTemplateConversation(self.source, self.variables, self.name)
        clone.system_message = self.system_message
        clone.messages = [list(message) for message in self.messages]
        return clone

    def get_prompt(self):
        chat = [{"role": "system", "content": self.system_message}] if self.system_message is not None else []
        chat += [{"role": role, "content": text} for role, text in self.messages if text is not None]
        open_turn = bool(self.messages) and self.messages[-1][1] is None
        return render_chat(self.source, chat, add_generation_prompt=open_turn, **self.variables)
