"""Runs one untrusted program inside limits. Started by sandbox.py as
`python -I -S -B sandbox_child.py WORKDIR PROGRAM CPU_SECONDS MEMORY_BYTES`; standard library only.

Before the program's first line runs: resource limits (CPU time, address space, file size, processes, open
files), then an audit hook. Audit hooks cannot be removed by the code they watch; this one refuses writes outside
WORKDIR, sockets, new processes (fork, exec, spawn, system, subprocess), signals to other processes, raising the
limits, native code (ctypes) and the few modules that start processes or interpreters without an audit event.
A run counts as passed only when this file, after the program's last line, prints the one-time token sandbox.py
wrote to its stdin (read, and stdin closed, before the program starts): a program that ends the process itself
(os._exit(0), say) never gets there. Exit status: 0 when the program ran to the end, 1 when it raised, the signal
when killed.
"""
import os
import resource
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
REFUSED_PREFIXES = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                    "os.forkpty", "os.kill", "os.killpg", "os.startfile", "os.link", "os.symlink", "os.chmod",
                    "os.chown", "os.lchown", "os.chflags", "os.setxattr", "os.removexattr", "os.chroot", "pty.",
                    "ctypes.", "resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers",
                    "gc.get_referents", "shutil.chown", "signal.pthread_kill", "sys.setprofile", "sys.settrace",
                    "webbrowser.")
# Imported modules that could act without an audit event: _posixsubprocess forks and execs, subinterpreters do not
# carry this interpreter's audit hooks, _ctypes and the test modules reach native code.
REFUSED_MODULES = ("_posixsubprocess", "_ctypes", "_xxsubinterpreters", "_xxinterpchannels", "_interpreters",
                   "_testcapi", "_testinternalcapi", "_testmultiphase", "_testsinglephase")
# Events naming paths that get written (or removed) -> the positions of those paths in the event's arguments.
PATH_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.truncate": (0,),
               "os.utime": (0,), "os.mkfifo": (0,), "os.mknod": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
               "shutil.copymode": (1,), "shutil.copystat": (1,), "shutil.copytree": (1,), "shutil.move": (0, 1),
               "shutil.make_archive": (0,), "shutil.unpack_archive": (1,), "tempfile.mkstemp": (0,),
               "tempfile.mkdtemp": (0,)}
# The positions of dir_fd arguments, which must be unset: relative to a directory descriptor, a path's meaning
# cannot be known here.
DIR_FD_ARGUMENTS = {"os.remove": (1,), "os.rmdir": (1,), "os.mkdir": (2,), "os.rename": (2, 3), "os.utime": (3,),
                    "os.mkfifo": (2,), "os.mknod": (3,), "shutil.rmtree": (1,)}


def set_limits(cpu_seconds, memory_bytes):
    limits = ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_bytes),
              (resource.RLIMIT_FSIZE, 16 << 20), (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_NOFILE, 64),
              (resource.RLIMIT_CORE, 0))
    for kind, value in limits:
        resource.setrlimit(kind, (value, value))


def install_guard(workdir):
    """Add the audit hook. Its state lives only in this closure, which nothing the program can reach refers to
    (and the gc introspection that could find it is refused)."""
    root = os.path.realpath(workdir)
    isdir, getcwd, fsdecode, join, realpath = (os.path.isdir, os.getcwd, os.fsdecode, os.path.join,
                                               os.path.realpath)

    def resolved(path):
        return realpath(join(getcwd(), fsdecode(path)))

    def inside(path):
        real = resolved(path)
        return real == root or real.startswith(root + "/")

    def refuse(event, detail):
        raise PermissionError(f"sandbox: {event} refused: {detail}")

    def check_open(args):
        path, mode, flags = (tuple(args) + (None, None))[:3]
        if isinstance(path, int):
            return  # wraps a descriptor this process already holds
        writes = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        if inside(path):
            return
        if writes:
            refuse("open", f"writing {fsdecode(path)} outside {root}")
        if isdir(resolved(path)):
            refuse("open", f"opening the directory {fsdecode(path)} (a dir_fd would reach outside {root})")

    def guard(event, args):
        if event == "open":
            check_open(args)
        elif event.startswith(REFUSED_PREFIXES):
            refuse(event, "not allowed in the sandbox")
        elif event == "import" and args and args[0] in REFUSED_MODULES:
            refuse(event, f"module {args[0]}")
        elif event in PATH_EVENTS:
            if any(i < len(args) and args[i] not in (None, -1) for i in DIR_FD_ARGUMENTS.get(event, ())):
                refuse(event, "dir_fd arguments")
            for index in PATH_EVENTS[event]:
                if index < len(args) and args[index] is not None and not isinstance(args[index], int) \
                        and not inside(args[index]):
                    refuse(event, f"{fsdecode(args[index])} is outside {root}")

    sys.addaudithook(guard)


def main(argv):
    workdir, program_path, cpu_seconds, memory_bytes = argv[0], argv[1], int(argv[2]), int(argv[3])
    token = sys.stdin.readline().strip()
    sys.stdin.close()
    os.close(0)
    with open(program_path, encoding="utf-8") as stream:
        source = stream.read()
    os.chdir(workdir)
    set_limits(cpu_seconds, memory_bytes)
    install_guard(workdir)
    try:
        code = compile(source, "program.py", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # pylint: disable=exec-used
    except BaseException as error:  # noqa: B036  the program's failure, whatever it is, is the verdict
        print(f"{type(error).__name__}: {error}"[-2000:], file=sys.stderr, flush=True)
        return 1
    for stream in (sys.stdout, sys.__stdout__):  # the program's buffered output goes first, the token last
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os.write(1, f"\n{token}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
