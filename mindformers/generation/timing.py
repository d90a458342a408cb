"""Where generation's time goes: graph compilation, prefill (the prompt's forward) and decode (one step per new
token), summed over a model's generate calls so predict can log them (`generation_times(model)`).

Graph mode compiles a step's graph on its first call for a shape; the step is compiled explicitly before that call
(Cell.compile) so its compile time is told apart from the run. In PyNative nothing is compiled, except the layer
graphs of context.layerwise_compile, traced inside a step's first run: their seconds count as compile.
"""
import dataclasses
import time

import mindspore as ms


@dataclasses.dataclass
class GenerationTimes:
    compile: float = 0.0  # seconds compiling step graphs (graph mode only)
    prefill: float = 0.0  # seconds running prompts through the model, compilation left out
    decode: float = 0.0  # seconds running the one-token steps, compilation left out
    decode_tokens: int = 0  # tokens those steps produced (a step of batch b counts b)

    @property
    def decode_tokens_per_second(self):
        return self.decode_tokens / self.decode if self.decode > 0 else 0.0


def generation_times(model):
    """The model's running totals (created on first use; set past Cell.__setattr__, it is no cell attribute)."""
    times = model.__dict__.get("_generation_times")
    if times is None:
        times = GenerationTimes()
        object.__setattr__(model, "_generation_times", times)
    return times


def reset_generation_times(model):
    object.__setattr__(model, "_generation_times", GenerationTimes())
    return model.__dict__["_generation_times"]


def layer_trace_seconds(model):
    """Seconds context.layerwise_compile spent tracing and compiling the model's layer graphs so far (inside its
    PyNative steps; 0 without it)."""
    graphs = model.__dict__.get("_layerwise_graphs")
    return graphs.trace_seconds if graphs is not None else 0.0


def compile_if_new(step, inputs, times):
    """Compile `step` for these inputs' shapes unless it already was, adding the seconds to `times.compile`."""
    if ms.get_context("mode") != ms.GRAPH_MODE:
        return
    shapes = tuple((tuple(value.shape), str(value.dtype)) for value in inputs)
    compiled = step.__dict__.setdefault("_compiled_shapes", set())
    if shapes in compiled:
        return
    start = time.perf_counter()
    step.compile(*inputs)
    times.compile += time.perf_counter() - start
    compiled.add(shapes)


_RUN_STARTED = []  # perf_counter() when run_mindformer's main() began (config parsing included in "load")


def mark_run_start():
    _RUN_STARTED[:] = [time.perf_counter()]


def run_started(default):
    return _RUN_STARTED[0] if _RUN_STARTED else default


def seconds_since_process_start():
    """Wall seconds since this process started (Linux /proc; None elsewhere): interpreter and import time included."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as stream:
            uptime = float(stream.read().split()[0])
        import os  # pylint: disable=import-outside-toplevel
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def timing_line(load, times, wall):
    """The predict log's one line: where the wall time went."""
    line = (f"predict timing: load {load:.2f} s (config, tokenizer, weights), compile {times.compile:.2f} s, "
            f"prefill {times.prefill:.2f} s, decode {times.decode:.2f} s ({times.decode_tokens} tokens, "
            f"{times.decode_tokens_per_second:.1f} tokens/s)")
    return line + (f"; {wall:.2f} s since the process started" if wall is not None else "")
