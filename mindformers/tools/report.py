"""A report of one or more training runs: PNG plots against step and one self-contained index.html.

    python -m mindformers.tools.report OUTPUT_DIR [OUTPUT_DIR ...] [--output REPORT_DIR] [--smoothing 0.9]

Each OUTPUT_DIR is a run's output_dir: its log/train_metrics.jsonl gives the curves (loss raw and smoothed, learning
rate, gradient norm, tokens/s, MFU), log/run_info.json the config summary, and eval_results.json /
eval_<task>_results.json the evaluation results. Several runs are overlaid, one colour each. The report goes to
REPORT_DIR (default <first OUTPUT_DIR>/report/): loss.png, lr.png, grad_norm.png, throughput.png, mfu.png and
index.html, which embeds the plots and opens without the PNG files.
"""
import argparse
import base64
import glob
import html
import json
import os
import sys
from dataclasses import dataclass, field

from mindformers.checkpoint.atomic import atomic_folder
from mindformers.tools.errors import ConfigError, DataError, exit_on_user_error
from mindformers.tools.json_file import load_json

METRICS_FILE = os.path.join("log", "train_metrics.jsonl")

# (file stem, record key, title, y label, scale)
PLOTS = (
    ("loss", "loss", "Training loss", "loss", 1.0),
    ("lr", "lr", "Learning rate", "learning rate", 1.0),
    ("grad_norm", "grad_norm", "Gradient norm", "global L2 norm", 1.0),
    ("throughput", "tokens_per_s", "Throughput", "tokens/s", 1.0),
    ("mfu", "mfu", "Model FLOPs utilisation", "MFU (%)", 100.0),
)


@dataclass
class Run:
    folder: str
    label: str
    records: list
    info: dict = None
    evals: dict = field(default_factory=dict)

    def series(self, key, scale=1.0):
        points = [(r["step"], r[key]) for r in self.records if isinstance(r.get(key), (int, float))]
        return [p[0] for p in points], [p[1] * scale for p in points]


def read_metrics(folder):
    """The step records, one per step: a run resumed into the same folder keeps the latest record of a step."""
    path = os.path.join(folder, METRICS_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{folder}: no {METRICS_FILE} (expected the output_dir of a training run)")
    by_step = {}
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise DataError(f"{path}: line {number}: expected an object with an integer 'step'")
            by_step[record["step"]] = record
    if not by_step:
        raise DataError(f"{path}: no step records")
    return [by_step[step] for step in sorted(by_step)]


def read_evals(folder):
    """{file name: results} for eval_results.json and the benchmark tasks' eval_<task>_results.json."""
    paths = sorted(glob.glob(os.path.join(folder, "eval_results.json")) +
                   glob.glob(os.path.join(folder, "eval_*_results.json")))
    return {os.path.basename(path): load_json(path) for path in paths}


def unique_labels(folders):
    """The folder names, with parent folders added until they differ."""
    parts = [os.path.abspath(folder).rstrip(os.sep).split(os.sep) for folder in folders]
    depth = 1
    while depth < max(len(p) for p in parts):
        labels = [os.sep.join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
        depth += 1
    return [f"{i + 1}: {os.sep.join(p)}" for i, p in enumerate(parts)]


def load_runs(folders):
    runs = []
    for folder, label in zip(folders, unique_labels(folders)):
        if not os.path.isdir(folder):
            raise ConfigError(f"{folder}: not a folder (expected a training run's output_dir)")
        info_path = os.path.join(folder, "log", "run_info.json")
        info = load_json(info_path) if os.path.isfile(info_path) else None
        runs.append(Run(folder, label, read_metrics(folder), info, read_evals(folder)))
    return runs


def smoothed(values, weight):
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0."""
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = average * weight + (1 - weight) * value
        out.append(average / (1 - weight ** count) if weight else value)
    return out


def plot(runs, key, title, ylabel, scale, path, smoothing=None):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for index, run in enumerate(runs):
            steps, values = run.series(key, scale)
            if not steps:
                continue
            color = f"C{index % 10}"
            if smoothing is None:
                axes.plot(steps, values, color=color, linewidth=1.5, label=run.label)
            else:
                axes.plot(steps, values, color=color, linewidth=1.0, alpha=0.3)
                axes.plot(steps, smoothed(values, smoothing), color=color, linewidth=2.0,
                          label=f"{run.label} (smoothed {smoothing:g})")
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="small")
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)


def mean_after_first(values):
    """The mean without the first step (it includes graph compilation)."""
    rest = values[1:] or values
    return sum(rest) / len(rest) if rest else float("nan")


def run_summary(run):
    steps, losses = run.series("loss")
    _, speeds = run.series("tokens_per_s")
    _, mfus = run.series("mfu", 100.0)
    _, times = run.series("step_time")
    return [("steps", f"{steps[0]}-{steps[-1]} ({len(steps)} logged)" if steps else "-"),
            ("loss first / last / min", f"{losses[0]:.4f} / {losses[-1]:.4f} / {min(losses):.4f}" if losses else "-"),
            ("tokens/s (mean after first step)", f"{mean_after_first(speeds):.1f}" if speeds else "-"),
            ("MFU (mean after first step)", f"{mean_after_first(mfus):.2f}%" if mfus else "-"),
            ("training time", f"{sum(times):.1f} s" if times else "-")]


def config_summary(run):
    """The facts people compare runs by, from run_info.json."""
    info = run.info
    if not info:
        return [("config", "no log/run_info.json in this run")]
    config = info.get("config") or {}
    model = ((config.get("model") or {}).get("model_config")) or {}
    optimizer = config.get("optimizer") or {}
    schedule = config.get("lr_schedule") or {}
    parallel = config.get("parallel_config") or {}
    wrapper = config.get("runner_wrapper") or {}
    sizes = ", ".join(f"{key} {model[key]}" for key in ("num_layers", "hidden_size", "num_heads", "n_kv_heads",
                                                        "intermediate_size", "vocab_size") if model.get(key))
    rows = [("model", f"{info.get('model_name')} ({info.get('parameters', 0) / 1e6:.2f}M parameters, "
                      f"{info.get('trainable_parameters', 0) / 1e6:.2f}M trainable)"),
            ("sizes", sizes or "-"),
            ("sequence length / global batch", f"{info.get('seq_length')} / {info.get('global_batch_size')}"),
            ("epochs x steps", f"{info.get('epochs')} x {info.get('steps_per_epoch')} = {info.get('total_steps')}"),
            ("optimizer", ", ".join(f"{k} {v}" for k, v in optimizer.items()) or "-"),
            ("lr schedule", ", ".join(f"{k} {v}" for k, v in schedule.items()) or "-"),
            ("clipping / loss scale", f"use_clip_grad {wrapper.get('use_clip_grad')}, max_grad_norm "
                                      f"{wrapper.get('max_grad_norm')}, scale_sense {wrapper.get('scale_sense')}"),
            ("dtypes", f"compute {model.get('compute_dtype')}, params {model.get('param_init_type')}"),
            ("mesh (dp x mp x pp)", f"{parallel.get('data_parallel', 1)} x {parallel.get('model_parallel', 1)} x "
                                    f"{parallel.get('pipeline_stage', 1)} on {info.get('world_size')} process(es)"),
            ("seed", config.get("seed"))]
    if model.get("pet_config"):
        rows.append(("pet_config", model["pet_config"]))
    return rows


def flat_numbers(prefix, value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flat_numbers(f"{prefix}.{key}" if prefix else str(key), item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix, value


def table(rows, header=None):
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}.swatch{display:inline-block;
width:12px;height:12px;margin-right:6px;vertical-align:middle}"""


def render_html(runs, images):
    import matplotlib.colors  # pylint: disable=import-outside-toplevel
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Training report</title>"
             f"<style>{STYLE}</style></head><body><h1>Training report</h1>"]
    header = ["run"] + [run.label for run in runs]
    summaries = [run_summary(run) for run in runs]
    parts.append("<h2>Runs</h2>")
    swatches = "".join(f"<p><span class='swatch' style='background:{matplotlib.colors.to_hex(f'C{i % 10}')}'>"
                       f"</span>{html.escape(run.label)}: {html.escape(os.path.abspath(run.folder))}</p>"
                       for i, run in enumerate(runs))
    parts.append(swatches)
    parts.append(table([[name] + [s[row][1] for s in summaries] for row, (name, _) in enumerate(summaries[0])],
                       header))
    parts.append("<h2>Curves</h2>")
    for name, data in images:
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Configuration</h2>")
    for run in runs:
        parts.append(f"<h3>{html.escape(run.label)}</h3>" + table(config_summary(run)))
    evaluated = [run for run in runs if run.evals]
    if evaluated:
        parts.append("<h2>Evaluation</h2>")
        for run in evaluated:
            rows = [(name, key, f"{value:.6g}") for name, results in run.evals.items()
                    for key, value in flat_numbers("", results)]
            parts.append(f"<h3>{html.escape(run.label)}</h3>" + table(rows, ["file", "result", "value"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(runs, output, smoothing):
    """Writes the PNGs and index.html into `output` all at once (nothing half-written); returns index.html's path."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise ConfigError(f"--output: {output} is a file (expected a folder for the report)")
    images = []
    with atomic_folder(output) as folder:
        for stem, key, title, ylabel, scale in PLOTS:
            path = os.path.join(folder, f"{stem}.png")
            plot(runs, key, title, ylabel, scale, path, smoothing if key == "loss" else None)
            with open(path, "rb") as stream:
                images.append((stem, base64.b64encode(stream.read()).decode("ascii")))
        with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as stream:
            stream.write(render_html(runs, images))
    return os.path.join(output, "index.html")


def smoothing_weight(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def build_parser():
    from mindformers.run import OneLineParser  # pylint: disable=import-outside-toplevel
    parser = OneLineParser(prog="python -m mindformers.tools.report",
                           description="Plots and an HTML page comparing training runs.")
    parser.add_argument("output_dirs", nargs="+", metavar="OUTPUT_DIR", help="a training run's output_dir")
    parser.add_argument("--output", default=None, help="report folder (default <first OUTPUT_DIR>/report)")
    parser.add_argument("--smoothing", type=smoothing_weight, default=0.9,
                        help="weight of the loss curve's moving average, in [0, 1) (default 0.9)")
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    runs = load_runs(args.output_dirs)
    output = os.path.abspath(args.output or os.path.join(args.output_dirs[0], "report"))
    index = write_report(runs, output, args.smoothing)
    print(f"report of {len(runs)} run(s): {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
