"""python -m mindformers.serve: an OpenAI-compatible server for the model of a YAML config, in one command.

    python -m mindformers.serve --config CONFIG --load_checkpoint CKPT [--vocab_file F] [--host 127.0.0.1]
                                [--port 8000] [--template llama-2] [--max_batch_size 8]

After checking flags and paths, it starts FastChat's controller and OpenAI API server (child processes; the API on
--host:--port) and, meanwhile, builds the model as predict does (same flags, same checks); then our model worker
serves it from this process and registers with the controller. /v1/chat/completions, /v1/completions and /v1/models
answer under the model name trainer.model_name. Ctrl-C or SIGTERM stops all three. Logs: <output_dir>/log/serve/.
"""
import asyncio
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from mindformers.generation.chat import DEFAULT_TEMPLATE
from mindformers.run import OneLineParser, load_config_with
from mindformers.serve.processes import ChildProcesses, ServeError, free_port, http_json, port_error
from mindformers.tools.errors import ConfigError, exit_on_user_error

logger = logging.getLogger("mindformers")

STARTUP_TIMEOUT = 120.0  # seconds for each part to answer once started
API_SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai_api_server.py")


def port_number(text):
    import argparse  # pylint: disable=import-outside-toplevel
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number (1-65535), got {text!r}")
    return value


def positive_int(text):
    import argparse  # pylint: disable=import-outside-toplevel
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = OneLineParser(prog="python -m mindformers.serve",
                           description="OpenAI-compatible API (FastChat controller, worker and API server) for the "
                                       "model of a YAML config.")
    add = parser.add_argument
    add("--config", required=True, help="YAML config (model, processor.tokenizer, trainer.model_name)")
    add("--load_checkpoint", default=None, help="checkpoint file or folder")
    add("--vocab_file", default=None, help="tokenizer file, overriding processor.tokenizer.vocab_file")
    add("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    add("--port", type=port_number, default=8000, help="port of the API (default 8000)")
    add("--template", default=DEFAULT_TEMPLATE, help=f"chat template: an fschat conversation template (default "
                                                      f"{DEFAULT_TEMPLATE}, as run_chat.py) or 'tokenizer' for the "
                                                      "model folder's own Jinja chat_template")
    add("--max_batch_size", type=positive_int, default=8, help="requests continued together (default 8)")
    add("--device_target", choices=("Ascend", "CPU", "GPU"), default=None)
    add("--output_dir", default=None, help="where log/serve/ goes (default: output_dir of the YAML)")
    return parser


class WorkerServer:
    """Uvicorn serving FastChat's worker app in a thread of this process (the model lives here). Its event loop
    runs blocking /worker_generate calls in a pool as large as the worker's concurrency, so that many requests
    reach the engine together (asyncio's default pool has os.cpu_count() + 4 threads)."""

    def __init__(self, port, concurrency):
        import uvicorn  # pylint: disable=import-outside-toplevel
        from fastchat.serve.base_model_worker import app  # pylint: disable=import-outside-toplevel
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))
        self.concurrency = concurrency
        self.thread = threading.Thread(target=self._run, name="worker-http", daemon=True)

    def _run(self):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_default_executor(ThreadPoolExecutor(self.concurrency, thread_name_prefix="worker-request"))
        loop.run_until_complete(self.server.serve())  # not the main thread: uvicorn leaves signals to us

    def start(self):
        self.thread.start()

    def ready(self):
        if not self.server.started and not self.thread.is_alive():
            raise ServeError(f"the model worker's HTTP server stopped while starting (port "
                             f"{self.server.config.port}); see the log above")
        return self.server.started

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def model_name_of(config):
    return str((config.get("trainer") or {}).get("model_name") or "llama")


def check_template(template, tokenizer):
    """An unknown name, or a tokenizer without a chat_template: one line (without a tokenizer at all, building the
    model says so)."""
    from mindformers.generation.chat import TOKENIZER_TEMPLATE, new_conversation  # noqa: E501 pylint: disable=import-outside-toplevel
    if tokenizer is not None or template != TOKENIZER_TEMPLATE:
        new_conversation(template, tokenizer)


def build_model(config):
    """(network, tokenizer) as predict builds them, with the YAML's context."""
    from mindformers.core.context import build_context  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.inference_model import build_inference_model  # noqa: E501 pylint: disable=import-outside-toplevel
    build_context(config)
    _, network, tokenizer = build_inference_model(config, "serve")
    return network, tokenizer


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM: while the model is being built they interrupt it; once the server runs they set
    `stopping`, and the main thread shuts everything down in order."""

    def __init__(self):
        self.stopping = threading.Event()
        self.interrupt = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum, _frame):
        logger.info("%s: stopping the server", signal.Signals(signum).name)
        self.stopping.set()
        if self.interrupt:
            raise KeyboardInterrupt


def preflight(args):
    """The config, once everything that needs no model is checked: a bad flag or path is one line before anything
    starts."""
    from mindformers.checkpoint import resolve_checkpoint  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.causal_language_modeling import build_tokenizer  # noqa: E501 pylint: disable=import-outside-toplevel
    config = load_config_with(args.config, load_checkpoint=args.load_checkpoint, vocab_file=args.vocab_file,
                              device_target=args.device_target, output_dir=args.output_dir)
    if config.get("load_checkpoint"):
        resolve_checkpoint(config.get("load_checkpoint"), 0)
    check_template(args.template, build_tokenizer(config))  # a missing tokenizer file; an unusable --template
    busy = port_error(args.host, args.port)
    if busy:
        raise ConfigError(f"--port: cannot listen on {args.host}:{args.port} ({busy})")
    return config


def serve(args):
    from mindformers.serve.engine import BatchingEngine  # pylint: disable=import-outside-toplevel
    from mindformers.serve.worker import create_worker  # pylint: disable=import-outside-toplevel
    from mindformers.tools.logger import setup_logging  # pylint: disable=import-outside-toplevel

    config = preflight(args)
    output_dir = os.path.abspath(config.get("output_dir") or "./output")
    log_dir = os.path.join(output_dir, "log", "serve")
    os.makedirs(log_dir, exist_ok=True)
    setup_logging(output_dir)
    model_name = model_name_of(config)
    signals = StopSignals()
    children = ChildProcesses(log_dir)
    # LOGDIR='': FastChat's parts log to their stdout (our log files) instead of writing files in the cwd.
    env = dict(os.environ, LOGDIR="")
    controller_url = f"http://127.0.0.1:{free_port()}"
    local_api = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    concurrency = 4 * args.max_batch_size
    engine = worker_server = None
    try:
        # FastChat's controller and API server start while the model is built: they need no model.
        logger.info("starting FastChat's controller at %s and OpenAI API server at %s:%d", controller_url, args.host,
                    args.port)
        children.start("controller", ["-m", "fastchat.serve.controller", "--host", "127.0.0.1",
                                      "--port", controller_url.rsplit(":", 1)[1]], env)
        children.start("openai_api_server", [API_SERVER_SCRIPT, "--controller-address", controller_url,
                                             "--host", args.host, "--port", str(args.port)], env)
        network, tokenizer = build_model(config)
        signals.interrupt = False
        engine = BatchingEngine(network, tokenizer, args.max_batch_size)
        children.wait_for("the controller", lambda: http_json(f"{controller_url}/list_models", {}) is not None,
                          signals.stopping, STARTUP_TIMEOUT)
        worker_port = free_port()
        worker = create_worker(engine, tokenizer, model_name, network.config.seq_length, args.template,
                               controller_url, f"http://127.0.0.1:{worker_port}", concurrency)
        worker_server = WorkerServer(worker_port, concurrency)
        worker_server.start()
        children.wait_for("the model worker", worker_server.ready, signals.stopping, STARTUP_TIMEOUT)
        worker.init_heart_beat()  # registers with the controller, then beats every 45 s
        logger.info("model worker for %s (template %s, batches of up to %d) at http://127.0.0.1:%d", model_name,
                    args.template, args.max_batch_size, worker_port)

        def api_lists_model():
            answer = http_json(f"{local_api}/v1/models")
            return bool(answer) and model_name in [card.get("id") for card in answer.get("data") or []]

        children.wait_for("the OpenAI API server", api_lists_model, signals.stopping, STARTUP_TIMEOUT)
        print(f"serving {model_name} at http://{args.host}:{args.port}/v1 (chat/completions, completions, models); "
              "Ctrl-C stops", flush=True)
        while not signals.stopping.wait(0.5):
            children.check()
    except KeyboardInterrupt:
        pass
    finally:
        signals.interrupt = False
        children.stop()
        if worker_server is not None:
            worker_server.stop()
        if engine is not None:
            engine.stop()
        logger.info("server stopped")
    return 0


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except KeyboardInterrupt:  # Ctrl-C before the server was set up to stop by itself
        return 130


if __name__ == "__main__":
    sys.exit(main())
