"""Serving: an OpenAI-compatible API through FastChat (controller, our batching model worker, FastChat's API
server), started by `python -m mindformers.serve`; see mindformers/serve/launcher.py."""
