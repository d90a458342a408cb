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


# Ways around a path check that an audit hook alone does not see: files created from C (sqlite's ATTACH, dbm,
# readline's history, POSIX shared memory and semaphores under /dev/shm) and relative paths resolved against a
# directory descriptor (dir_fd, also reached through open's opener) instead of the folder the hook checks against.
ESCAPES = {
    "sqlite3.connect": "import sqlite3\nsqlite3.connect(OUT + '/new.db').execute('create table t(a)')",
    "sqlite3 uri": "import sqlite3\nsqlite3.connect('file:' + OUT + '/new.db?mode=rwc', uri=True)",
    "sqlite3 attach": "import sqlite3\nc = sqlite3.connect(':memory:')\n"
                      "c.execute(\"attach database '\" + OUT + \"/new.db' as y\")\nc.execute('create table y.t(a)')",
    "os.open with dir_fd": "import os\nos.makedirs('a/b')\nfd = os.open('.', os.O_RDONLY)\nos.chdir('a/b')\n"
                           "os.open(os.path.relpath(OUT + '/new.txt', ROOT), os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
    "open with an opener": "import os\nos.makedirs('a/b')\nfd = os.open('.', os.O_RDONLY)\nos.chdir('a/b')\n"
                           "open(os.path.relpath(OUT + '/new.txt', ROOT), 'w', "
                           "opener=lambda p, f: os.open(p, f, dir_fd=fd)).write('x')",
    "opener to another path": "import os\nopen('mine.txt', 'w', opener=lambda p, f: os.open(OUT + '/new.txt', f))",
    "shared memory": "from multiprocessing import shared_memory\n"
                     "shared_memory.SharedMemory(name='mf_sandbox_escape', create=True, size=16)",
    "shm_open": "import os, _posixshmem\n_posixshmem.shm_open('/mf_sandbox_escape', os.O_CREAT | os.O_RDWR, 0o600)",
    "named semaphore": "import _multiprocessing\n_multiprocessing.SemLock(1, 1, 1, '/mf_sandbox_escape', False)",
    "dbm": "import dbm\ndb = dbm.open(OUT + '/new', 'c')\ndb['k'] = 'v'",
    "readline history": "import readline\nreadline.write_history_file(OUT + '/new.txt')",
}


@pytest.mark.parametrize("attempt", sorted(ESCAPES))
def test_escapes_through_c_and_dir_fd_fail(attempt, temp_root, outside):
    shared = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    program = f"import os\nOUT = {str(outside)!r}\nROOT = os.getcwd()\n" + ESCAPES[attempt] + "\n"
    result = run(program, temp_root)
    assert not result.passed and "sandbox:" in result.detail, result.detail
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    if shared:
        assert not [name for name in set(os.listdir("/dev/shm")) - shared if "mf_sandbox_escape" in name]


def test_the_kernel_refuses_writes_outside_where_landlock_exists(tmp_path, outside):
    """Below the audit hook: in the Landlock domain the child enters, a write outside the folder fails in the
    kernel even with no hook installed (skipped where the kernel has no Landlock)."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    from mindformers.evaluation.sandbox import CHILD  # pylint: disable=import-outside-toplevel
    workdir = tmp_path / "work"
    workdir.mkdir()
    probe = textwrap.dedent(f"""
        import importlib.util, os, sys
        spec = importlib.util.spec_from_file_location("child", {CHILD!r})
        child = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(child)
        abi = child.restrict_writes_to({str(workdir)!r})
        if not abi:
            print("no landlock")
            sys.exit(0)
        os.close(os.open({str(workdir / "inside.txt")!r}, os.O_WRONLY | os.O_CREAT))
        open(os.devnull, "w").write("fine")
        try:
            os.close(os.open({str(outside / "new.txt")!r}, os.O_WRONLY | os.O_CREAT))
        except PermissionError:
            print("refused", abi)
    """)
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.stdout.strip() == "no landlock":
        pytest.skip("this kernel has no Landlock")
    assert result.stdout.startswith("refused"), result.stdout + result.stderr
    assert (workdir / "inside.txt").exists() and sorted(os.listdir(outside)) == ["victim.txt"]


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
