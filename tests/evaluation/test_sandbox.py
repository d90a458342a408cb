"""HumanEval's sandbox: generated code runs in a child process that cannot hang the run, write outside its
temporary folder, open sockets or start processes; and its folder is gone afterwards."""
import os
import socket
import textwrap

import pytest

from mindformers.evaluation.sandbox import run_untrusted


@pytest.fixture
def temp_root(tmp_path):
    """Where the sandbox makes its temporary folders: empty again after every run."""
    root = tmp_path / "sandboxes"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path):
    """A folder outside the sandbox holding one file, `victim.txt`, that programs try to change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text("untouched")
    return folder


def run(program, temp_root, timeout=5.0):
    result = run_untrusted(textwrap.dedent(program), timeout=timeout, temp_root=str(temp_root))
    assert os.listdir(temp_root) == [], "the sandbox folder was left behind"
    return result


def test_a_correct_solution_passes_and_a_wrong_one_fails(temp_root):
    solution = "def add(a, b):\n    return a + b\n"
    tests = "\ndef check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"
    assert run(solution + tests, temp_root).passed
    wrong = run("def add(a, b):\n    return a - b\n" + tests, temp_root)
    assert (wrong.passed, wrong.status) == (False, "failed") and "AssertionError" in wrong.detail


def test_an_endless_loop_is_killed_and_the_next_program_runs(temp_root):
    looping = run("while True:\n    pass\n", temp_root, timeout=1.0)
    assert (looping.passed, looping.status) == (False, "timed out")
    sleeping = run("import time\ntime.sleep(60)\n", temp_root, timeout=1.0)  # no CPU used: the wall clock ends it
    assert sleeping.status == "timed out"
    assert run("assert sum(range(4)) == 6\n", temp_root).passed


def test_exiting_early_is_not_a_pass(temp_root):
    assert not run("import sys\nsys.exit(0)\nassert False\n", temp_root).passed
    for ending in ("os._exit(0)", "sys.stdout.write('x' * 50)\nsys.stdout.flush()\nos._exit(0)"):
        ended = run(f"import os, sys\n{ending}\nassert False\n", temp_root)
        assert (ended.passed, ended.status) == (False, "failed") and "before its last line" in ended.detail


def test_a_program_may_print_and_replace_its_stdout(temp_root):
    assert run("print('hello ' * 400)\n", temp_root).passed
    assert run("import io, sys\nprint('buffered', end='')\nsys.stdout = io.StringIO()\nprint('lost')\n",
               temp_root).passed


def test_files_inside_its_folder_are_allowed(temp_root):
    program = """
        import os, tempfile
        with open("scratch.txt", "w") as f:
            f.write("data")
        os.mkdir("sub")
        os.rename("scratch.txt", "sub/moved.txt")
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("x")
        assert open("sub/moved.txt").read() == "data"
    """
    result = run(program, temp_root)
    assert result.passed, result.detail


WRITES_OUTSIDE = {
    "open for writing": "open(OUT + '/new.txt', 'w').write('x')",
    "append to a file": "open(OUT + '/victim.txt', 'a').write('changed')",
    "os.open with O_CREAT": "import os\nos.open(OUT + '/new.txt', os.O_WRONLY | os.O_CREAT)",
    "pathlib": "import pathlib\npathlib.Path(OUT, 'new.txt').write_text('x')",
    "io.FileIO": "import io\nio.FileIO(OUT + '/new.txt', 'w')",
    "remove": "import os\nos.remove(OUT + '/victim.txt')",
    "rename out of the folder": "import os\nopen('mine.txt', 'w').close()\nos.rename('mine.txt', OUT + '/new.txt')",
    "rename into the folder": "import os\nos.rename(OUT + '/victim.txt', 'stolen.txt')",
    "mkdir": "import os\nos.mkdir(OUT + '/new.txt')",
    "rmtree": "import shutil\nshutil.rmtree(OUT)",
    "truncate": "import os\nos.truncate(OUT + '/victim.txt', 0)",
    "chmod": "import os\nos.chmod(OUT + '/victim.txt', 0)",
    "relative path": "import os\nopen(os.path.relpath(OUT + '/new.txt'), 'w').write('x')",
    "chdir then write": "import os\nos.chdir(OUT)\nopen('new.txt', 'w').write('x')",
    "symlink to a file outside": "import os\nos.symlink(OUT + '/victim.txt', 'link')\nopen('link', 'w').write('x')",
    "hard link": "import os\nos.link(OUT + '/victim.txt', 'link')\nopen('link', 'w').write('x')",
    "directory descriptor": "import os\nfd = os.open(OUT, os.O_RDONLY)\n"
                            "os.open('new.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
    "copy": "import shutil\nopen('mine.txt', 'w').close()\nshutil.copy('mine.txt', OUT + '/new.txt')",
}


@pytest.mark.parametrize("attempt", sorted(WRITES_OUTSIDE))
def test_writing_outside_its_folder_fails_and_changes_nothing(attempt, temp_root, outside):
    result = run(f"OUT = {str(outside)!r}\n" + WRITES_OUTSIDE[attempt] + "\n", temp_root)
    assert not result.passed and "sandbox:" in result.detail, result.detail
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "untouched"
    assert os.stat(outside / "victim.txt").st_mode & 0o600 == 0o600


def test_sockets_are_refused(temp_root):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        connect = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n", temp_root)
        assert not connect.passed and "sandbox: socket" in connect.detail, connect.detail
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing ever connected
    for program in ("import socket\nsocket.socket()\n", "import socket\nsocket.getaddrinfo('localhost', 80)\n",
                    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/')\n"):
        result = run(program, temp_root)
        assert not result.passed and "sandbox:" in result.detail, (program, result.detail)


PROCESSES = {
    "subprocess": "import subprocess\nsubprocess.run(['touch', MARK])",
    "os.system": "import os\nos.system('touch ' + MARK)",
    "os.popen": "import os\nos.popen('touch ' + MARK).read()",
    "fork": "import os\nif os.fork() == 0:\n    open(MARK, 'w').close()",
    "exec": "import os\nos.execv('/usr/bin/touch', ['touch', MARK])",
    "posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', MARK], {})",
    "multiprocessing": "import multiprocessing\nmultiprocessing.Process(target=print).start()",
    "_posixsubprocess": "import _posixsubprocess",
    "ctypes": "import ctypes\nctypes.CDLL(None).system(('touch ' + MARK).encode())",
    "raise its limits": "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))",
}


def test_signalling_another_process_fails(temp_root):
    import subprocess  # pylint: disable=import-outside-toplevel
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        result = run(f"import os\nos.kill({bystander.pid}, 9)\n", temp_root)
        assert not result.passed and "sandbox: os.kill" in result.detail, result.detail
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("attempt", sorted(PROCESSES))
def test_starting_processes_fails(attempt, temp_root, outside):
    mark = outside / "started.txt"
    result = run(f"MARK = {str(mark)!r}\n" + PROCESSES[attempt] + "\n", temp_root)
    assert not result.passed and "sandbox:" in result.detail, result.detail
    assert not mark.exists()
