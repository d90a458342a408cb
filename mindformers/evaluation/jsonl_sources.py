"""Finding a task's JSON Lines files: the file named by --eval_data_path, or the preferred file names in that
folder, or every *.jsonl there."""
import os

from mindformers.evaluation.data_files import files_in, layout_error


def jsonl_files(data_path, preferred, task, layout, gzipped=False):
    if os.path.isfile(data_path):
        return [data_path]
    for name in preferred:
        if os.path.isfile(os.path.join(data_path, name)):
            return [os.path.join(data_path, name)]
    found = files_in(data_path, "*.jsonl") + (files_in(data_path, "*.jsonl.gz") if gzipped else [])
    if not found:
        raise layout_error(task, data_path, layout)
    return found


def file_stem(path):
    name = os.path.basename(path)
    for suffix in (".gz", ".jsonl", ".json"):
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    return name
