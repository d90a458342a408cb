"""Writing MindRecord files so that a failed or interrupted run leaves nothing half-written.

MindRecord stores the names of its files inside their headers (a renamed .mindrecord no longer opens), so
the files are written under their final names into a hidden temporary folder next to the output, then
moved into place (same file system: each move is an atomic rename) once FileWriter has committed.
"""
import os
import shutil
import tempfile

from mindformers.checkpoint.atomic import left_by_interrupted_run
from mindformers.dataset.dataloader.mind_dataset import mindspore_reason
from mindformers.tools.errors import DataError, RunFault, out_of_space_reason


def power_of_two_at_least(value):
    return 1 << max(int(value) - 1, 0).bit_length()


def page_and_header_size(expected_bytes):
    """FileWriter's defaults (32 MB pages, 16 MB header) turn a 1 MB dataset into a 50 MB file. Size both to
    the data instead: ~2k pages of at least 1 MB (1 MB pages read shuffled as fast as 32 MB ones, measured on
    40 MB of rows), and a header with room for 10x as many pages (it needs ~50 bytes per page; when it runs
    out, FileWriter fails, so estimate the data size generously)."""
    page = min(max(power_of_two_at_least(expected_bytes / 2048), 1 << 20), 1 << 28)
    pages = expected_bytes / page + 2
    header = min(max(power_of_two_at_least(pages * 500), 1 << 16), 1 << 27)
    return page, header


class AtomicMindRecordWriter:
    """Context manager: `write(rows)` batches of dicts; the files appear at `output_file` only on success."""

    def __init__(self, output_file, schema, shard_num=1, description="mindrecord", flag="--output_file",
                 expected_bytes=0):
        self.output_file = os.path.abspath(os.path.expanduser(output_file))
        self.schema = schema
        self.shard_num = shard_num
        self.description = description
        self.flag = flag
        self.folder = os.path.dirname(self.output_file)
        self.name = os.path.basename(self.output_file)
        self.temp_folder = None
        self.writer = None
        self.rows = 0
        self.created_folders = []
        self.page_size, self.header_size = page_and_header_size(expected_bytes)

    def __enter__(self):
        if os.path.isdir(self.output_file):
            raise DataError(f"{self.flag}: {self.output_file} is a folder; expected a file name such as "
                            f"{os.path.join(self.output_file, 'data.mindrecord')}")
        folder = self.folder
        while not os.path.exists(folder):  # folders we create, removed again if the run fails
            self.created_folders.append(folder)
            folder = os.path.dirname(folder)
        try:
            try:
                os.makedirs(self.folder, exist_ok=True)
                self.remove_interrupted_outputs()
                self.temp_folder = tempfile.mkdtemp(prefix=f".{self.name}.tmp-{os.getpid()}-", dir=self.folder)
            except OSError as error:
                raise DataError(f"{self.flag}: cannot write to {self.folder} ({error.strerror or error})") from None
            from mindspore.mindrecord import FileWriter  # the MindSpore import is slow; only writers need it
            self.writer = FileWriter(os.path.join(self.temp_folder, self.name), shard_num=self.shard_num,
                                     overwrite=True)
            self.writer.set_page_size(self.page_size)
            self.writer.set_header_size(self.header_size)
            self.writer.add_schema(self.schema, self.description)
        except BaseException:
            self.clean_up(failed=True)
            raise
        return self

    def remove_interrupted_outputs(self):
        """Temporary folders an interrupted (killed) run writing this same output left behind."""
        for name in os.listdir(self.folder):
            if name.startswith(f".{self.name}.tmp-") and left_by_interrupted_run(name):
                shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)

    def write(self, rows):
        if rows:
            try:
                self.writer.write_raw_data(rows)
            except (RuntimeError, OSError) as error:
                raise self.failure(error) from None
            self.rows += len(rows)

    def failure(self, error):
        """One line for a write that failed: a full disk is a RunFault (exit 1), anything else MindSpore says a
        DataError; either way the temporary folder is removed on the way out."""
        reason = out_of_space_reason(error)
        if reason is None and isinstance(error, RuntimeError) and "no free disk" in str(error).lower():
            reason = "No space left on device"
        if reason is not None:
            return RunFault(f"{self.flag}: cannot write {self.output_file}: {reason}; nothing was written")
        return DataError(f"{self.flag}: cannot write {self.output_file} ({mindspore_reason(error)}); nothing was "
                         "written")

    def output_files(self):
        """The final paths: `name` (+ `.db`) for one shard, `name0..N-1` (+ `.db`) for a partitioned output."""
        names = [self.name] if self.shard_num == 1 else [f"{self.name}{index}" for index in range(self.shard_num)]
        return [os.path.join(self.folder, name + suffix) for name in names for suffix in ("", ".db")]

    def __exit__(self, kind, error, trace):
        try:
            if kind is None:
                try:
                    self.writer.commit()
                except (RuntimeError, OSError) as commit_error:
                    raise self.failure(commit_error) from None
                written = sorted(os.listdir(self.temp_folder))
                # index files first: a data file is only visible once its .db is in place
                for name in sorted(written, key=lambda item: not item.endswith(".db")):
                    os.replace(os.path.join(self.temp_folder, name), os.path.join(self.folder, name))
        finally:
            self.clean_up(failed=kind is not None)
        return False

    def clean_up(self, failed):
        if self.temp_folder:
            shutil.rmtree(self.temp_folder, ignore_errors=True)
        if failed:
            for folder in self.created_folders:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
