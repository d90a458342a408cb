"""FastChat's OpenAI-compatible API server (fastchat.serve.openai_api_server), run for `python -m mindformers.serve`.

It is started by its path, not as a module of the package, so it imports FastChat only (not mindformers and
MindSpore): it needs no model and starts in a fraction of a second.

Two changes are made first. fschat 0.2.36 writes each streamed chunk with `chunk.json(exclude_unset=True,
ensure_ascii=False)`, which pydantic 2 rejects (TypeError: `dumps_kwargs` keyword arguments are no longer supported;
lm-sys/FastChat#3140, fixed upstream after the last release): the stream chunk classes get a `json` that accepts
those arguments and writes the same JSON. And a chat request reaches the worker as its messages (CHAT_PROMPT_MARK
followed by their JSON, in place of the prompt FastChat renders): our worker renders them with the model's
template, an fschat one or the model folder's own Jinja chat_template, for counting tokens and for generating.
"""
import os
import sys

# Run by path, this file's folder is first on sys.path: its neighbours (engine.py, worker.py, ...) must not shadow
# what FastChat and uvicorn import.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402

CHAT_PROMPT_MARK = "\x00mindformers-chat\x00"  # = mindformers.serve.worker's (not imported: that loads MindSpore)


def _json_with_dumps_arguments(self, ensure_ascii=False, **options):
    return json.dumps(self.model_dump(mode="json", **options), ensure_ascii=ensure_ascii)


def patch_stream_chunks():
    import pydantic  # pylint: disable=import-outside-toplevel
    from fastchat.protocol import openai_api_protocol as protocol  # pylint: disable=import-outside-toplevel
    if int(pydantic.VERSION.split(".", 1)[0]) < 2:
        return
    for cls in (protocol.ChatCompletionStreamResponse, protocol.CompletionStreamResponse):
        cls.json = _json_with_dumps_arguments


def send_chats_as_messages(fastchat_api):
    original = fastchat_api.get_gen_params

    @functools.wraps(original)
    async def get_gen_params(model_name, worker_addr, messages, **options):
        params = await original(model_name, worker_addr, messages, **options)
        if not isinstance(messages, str):  # a chat sends a list of messages, a completion a prompt
            params["prompt"] = CHAT_PROMPT_MARK + json.dumps(messages, ensure_ascii=False)
        return params

    fastchat_api.get_gen_params = get_gen_params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controller-address", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    patch_stream_chunks()
    import uvicorn  # pylint: disable=import-outside-toplevel
    from fastchat.serve import openai_api_server as fastchat_api  # pylint: disable=import-outside-toplevel
    send_chats_as_messages(fastchat_api)
    fastchat_api.app_settings.controller_address = args.controller_address
    uvicorn.run(fastchat_api.app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
