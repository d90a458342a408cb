"""A FastChat model worker backed by our generate: FastChat's worker app and controller protocol (register,
heart beat, /worker_generate_stream, /worker_generate, /count_token, /worker_get_conv_template, /model_details),
with generation done by the batching engine.

A completion's prompt is tokenized as it is (a literal <s> / </s> as the bos / eos ids). A chat comes from our API
server as its messages (CHAT_PROMPT_MARK and their JSON), which the worker renders with its template: an fschat
conversation template, or with `--template tokenizer` the model folder's own Jinja chat_template, exactly as
run_chat.py renders them. The request is queued for the engine and the reply text so far streams back,
NUL-separated JSON as FastChat's workers send it.
"""
import json
import logging
import uuid

from mindformers.generation.chat import TOKENIZER_TEMPLATE, encode_with_specials, new_conversation
from mindformers.generation.chat import prompt_ids as chat_prompt_ids
from mindformers.generation.row_decoding import LENGTH, token_budget
from mindformers.serve.engine import GenerationRequest
from mindformers.serve.reply import ReplyText
from mindformers.tools.errors import ConfigError

logger = logging.getLogger("mindformers.serve")

# How our API server (mindformers/serve/openai_api_server.py) sends a chat: this mark, then the messages' JSON.
CHAT_PROMPT_MARK = "\x00mindformers-chat\x00"
GREEDY_TEMPERATURE = 1e-5  # FastChat's rule: a temperature (or top_p) this small means greedy decoding


class RequestError(ValueError):
    """A request the worker cannot serve; its text goes back to the client."""


def _number(params, key, default, kind=float):
    value = params.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise RequestError(f"{key}: expected a number, got {value!r}") from None


def generation_options(params):
    """GenerationConfig options from FastChat's worker parameters (OpenAI's, as its API server passes them)."""
    for key in ("presence_penalty", "frequency_penalty"):
        if _number(params, key, 0.0):
            raise RequestError(f"{key}: not supported by this server (leave it at 0)")
    if params.get("logprobs") is not None:
        raise RequestError("logprobs: not supported by this server")
    if params.get("use_beam_search") or _number(params, "best_of", 1, int) > 1:
        raise RequestError("use_beam_search / best_of: not supported by this server")
    if params.get("images"):
        raise RequestError("images: this model reads text only")
    temperature = _number(params, "temperature", 1.0)
    top_p = _number(params, "top_p", 1.0)
    stops = params.get("stop") or []
    stops = [stop for stop in ([stops] if isinstance(stops, str) else stops) if stop]
    options = {"max_new_tokens": _number(params, "max_new_tokens", 256, int),
               "repetition_penalty": _number(params, "repetition_penalty", 1.0), "stop_strings": stops or None}
    if temperature > GREEDY_TEMPERATURE and top_p > 1e-8:
        top_k = _number(params, "top_k", -1, int)
        options.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=max(top_k, 0))
    else:
        options["do_sample"] = False
    return options


def chat_messages(prompt):
    """The messages of a chat request, or None for a plain prompt."""
    if not isinstance(prompt, str):
        raise RequestError(f"prompt: expected text, got {type(prompt).__name__}")
    if not prompt.startswith(CHAT_PROMPT_MARK):
        return None
    try:
        messages = json.loads(prompt[len(CHAT_PROMPT_MARK):])
    except json.JSONDecodeError as error:
        raise RequestError(f"messages: not JSON ({error.msg})") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RequestError("messages: expected a list of {role, content} objects")
    return messages


def message_text(message):
    content = message.get("content")
    if isinstance(content, list):  # OpenAI's content parts
        if any(part.get("type") != "text" for part in content if isinstance(part, dict)):
            raise RequestError("messages: this model reads text only")
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def render_chat(conversation, messages):
    """`messages` (OpenAI's roles) into a conversation of the template, ending with the assistant's open turn, as
    FastChat's API server fills its templates."""
    user, assistant = conversation.roles
    for message in messages:
        role = message.get("role")
        if role == "system":
            conversation.set_system_message(message_text(message))
        elif role in ("user", "assistant"):
            conversation.append_message(user if role == "user" else assistant, message_text(message))
        else:
            raise RequestError(f"messages: unknown role {role!r} (expected system, user or assistant)")
    conversation.append_message(assistant, None)
    return conversation


def _base_worker_class():
    """FastChat's BaseModelWorker, with its module logger set first: left unset, the worker's constructor calls
    fastchat.utils.build_logger, which redirects this process's stdout and stderr into logging."""
    from fastchat.serve import base_model_worker  # pylint: disable=import-outside-toplevel
    if base_model_worker.logger is None:
        worker_logger = logging.getLogger("mindformers.serve.fastchat_worker")
        worker_logger.setLevel(logging.WARNING)  # its heart-beat lines every 45 s are noise on a console
        base_model_worker.logger = worker_logger
    return base_model_worker.BaseModelWorker


def create_worker(engine, tokenizer, model_name, context_len, template, controller_address, worker_address,
                  concurrency):
    """The worker object FastChat's worker app (fastchat.serve.base_model_worker.app) serves."""

    class MindFormersWorker(_base_worker_class()):
        def __init__(self):
            super().__init__(controller_address, worker_address, uuid.uuid4().hex[:8], model_name, [model_name],
                             concurrency, conv_template=template)
            self.engine, self.tokenizer, self.context_len = engine, tokenizer, context_len
            self.template = template
            self.defaults = engine.model.generation_config()
            self.eos_ids = set(self.defaults.eos_ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id
                                                         is not None else set())

        def make_conv_template(self, conv_template=None, model_path=None):
            """What FastChat's API server is told: the fschat template (its stop strings and ids apply), or for a
            Jinja template FastChat's 'raw' one, which adds nothing (the worker renders chats itself)."""
            from fastchat.conversation import get_conv_template  # pylint: disable=import-outside-toplevel
            return get_conv_template("raw" if conv_template == TOKENIZER_TEMPLATE else conv_template)

        def prompt_ids(self, prompt):
            """(token ids, whether it is a chat)."""
            messages = chat_messages(prompt)
            if messages is None:
                return encode_with_specials(self.tokenizer, prompt), False
            try:
                conversation = render_chat(new_conversation(self.template, self.tokenizer), messages)
                return chat_prompt_ids(self.tokenizer, conversation), True
            except ConfigError as error:  # e.g. a Jinja template that refuses a system message
                raise RequestError(str(error)) from None

        def count_token(self, params):
            try:
                return {"count": len(self.prompt_ids(params.get("prompt"))[0]), "error_code": 0}
            except RequestError:
                return {"count": 0, "error_code": 0}  # the generate call that follows reports it

        def request(self, params):
            ids, chat = self.prompt_ids(params.get("prompt"))
            options = generation_options(params)
            stop_ids = [int(i) for i in params.get("stop_token_ids") or []]
            options["eos_token_id"] = sorted(self.eos_ids | set(stop_ids))
            try:
                config = self.defaults.updated(**options)
                budget = token_budget(len(ids), config, self.context_len)
            except ConfigError as error:
                raise RequestError(str(error).replace("generate: ", "")) from None
            return GenerationRequest(ids, budget, config), chat

        def replies(self, params, stream):
            """The reply's states as FastChat's worker protocol has them: while `stream`, one each time the text
            grows; always a last one with the finish reason (or one with an error code)."""
            from fastchat.constants import ErrorCode  # pylint: disable=import-outside-toplevel
            try:
                request, chat = self.request(params)
            except RequestError as error:
                yield {"text": str(error), "error_code": int(ErrorCode.PARAM_OUT_OF_RANGE)}
                return
            row = request.row
            reply = ReplyText(self.tokenizer, row.prompt, row.config.stop_list, row.config.eos_ids, chat=chat)
            prefix = params["prompt"] if params.get("echo") and not chat else ""
            self.engine.submit(request)
            try:
                for token in request.tokens():
                    if not stream:
                        reply.keep(token)
                    elif reply.add(token) is not None:
                        yield {"text": prefix + reply.released, "error_code": 0, "usage": usage(row),
                               "finish_reason": None}
                yield {"text": prefix + reply.final(), "error_code": 0, "usage": usage(row),
                       "finish_reason": "length" if row.finish_reason == LENGTH else "stop"}
            except RuntimeError as error:
                yield {"text": str(error), "error_code": int(ErrorCode.INTERNAL_ERROR)}
            finally:
                request.cancel()  # the client may have gone mid-stream: stop spending steps on it

        def generate_stream_gate(self, params):
            for state in self.replies(params, stream=True):
                yield json.dumps(state).encode() + b"\0"

        def generate_gate(self, params):
            *_, last = self.replies(params, stream=False)
            return last

    return MindFormersWorker()


def usage(row):
    return {"prompt_tokens": len(row.prompt), "completion_tokens": len(row.generated),
            "total_tokens": len(row.prompt) + len(row.generated)}
