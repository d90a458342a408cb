"""Runs one untrusted program inside limits. Started by sandbox.py as
`python -I -S -B sandbox_child.py WORKDIR PROGRAM CPU_SECONDS MEMORY_BYTES`; standard library only.

Before the program's first line runs: resource limits (CPU time, address space, file size, processes, open
files); where the kernel has Landlock (Linux >= 5.13), a Landlock domain in which the kernel itself refuses every
write outside WORKDIR (whatever path, descriptor or module the program writes through), TCP, and signals to
processes outside the sandbox; then an audit hook. Audit hooks cannot be removed by the code they watch; this one
refuses writes outside WORKDIR, opening directories (a directory descriptor given as dir_fd would make a relative
path mean something else than the hook checked), sockets, new processes (fork, exec, spawn, system, subprocess),
signals to other processes, raising the limits, native code (ctypes), and the modules that create files, start
processes or interpreters without an audit event (sqlite3, POSIX shared memory and semaphores, dbm, readline).
Without Landlock the hook is the only guard, and a program racing threads against its checks could still get
past it: it keeps careless code in check, it is not a boundary against code written to escape.
A run counts as passed only when this file, after the program's last line, prints the one-time token sandbox.py
wrote to its stdin (read, and stdin closed, before the program starts): a program that ends the process itself
(os._exit(0), say) never gets there. Exit status: 0 when the program ran to the end, 1 when it raised, the signal
when killed.
"""
import os
import resource
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
DIRECTORY_FLAG = getattr(os, "O_DIRECTORY", 0)
TMPFILE_FLAG = getattr(os, "O_TMPFILE", 0)  # includes O_DIRECTORY's bit
REFUSED_PREFIXES = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                    "os.forkpty", "os.kill", "os.killpg", "os.startfile", "os.link", "os.symlink", "os.chmod",
                    "os.chown", "os.lchown", "os.chflags", "os.setxattr", "os.removexattr", "os.chroot", "pty.",
                    "ctypes.", "resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers",
                    "gc.get_referents", "shutil.chown", "signal.pthread_kill", "sys.setprofile", "sys.settrace",
                    "webbrowser.", "sqlite3.", "syslog.", "fcntl.ioctl", "os.unshare", "os.setns")
# Imported modules that could act without an audit event: _posixsubprocess forks and execs, subinterpreters do not
# carry this interpreter's audit hooks, _ctypes and the test modules reach native code; _sqlite3 (ATTACH DATABASE
# creates files from SQL), _posixshmem and _multiprocessing (POSIX shared memory and named semaphores under
# /dev/shm), _dbm/_gdbm and readline (history files) create files in C.
REFUSED_MODULES = ("_posixsubprocess", "_ctypes", "_xxsubinterpreters", "_xxinterpchannels", "_interpreters",
                   "_testcapi", "_testinternalcapi", "_testmultiphase", "_testsinglephase", "_sqlite3",
                   "_posixshmem", "_multiprocessing", "_dbm", "_gdbm", "readline")
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


# Landlock's system calls have one number on every architecture; the access rights are bits of its ABI.
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
FS_WRITE_FILE, FS_REMOVE_DIR, FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
FS_MAKE_ANYTHING = 0b1111111 << 6  # char, dir, regular, socket, fifo, block, symlink
FS_REFER, FS_TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
NET_BIND_AND_CONNECT_TCP = 0b11  # ABI 4
SCOPE_UNIX_AND_SIGNALS = 0b11  # ABI 6: abstract unix sockets and signals outside the domain
PR_SET_NO_NEW_PRIVS = 38


def restrict_writes_to(workdir):
    """Enter a Landlock domain in which only WORKDIR (and /dev/null) can be written; returns Landlock's ABI version,
    0 where the kernel has none (the audit hook is then the only guard). ctypes is dropped from sys.modules again,
    so the program cannot import it without the audit hook seeing the import."""
    import ctypes  # pylint: disable=import-outside-toplevel
    ruleset = -1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        abi = syscall(LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # 1: ask the version
        if abi < 1:
            return 0
        writes = FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_ANYTHING
        writes |= (FS_REFER if abi >= 2 else 0) | (FS_TRUNCATE if abi >= 3 else 0)

        class RulesetAttr(ctypes.Structure):  # pylint: disable=too-few-public-methods
            _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

        class PathBeneath(ctypes.Structure):  # pylint: disable=too-few-public-methods
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        attr = RulesetAttr(writes, NET_BIND_AND_CONNECT_TCP if abi >= 4 else 0,
                           SCOPE_UNIX_AND_SIGNALS if abi >= 6 else 0)
        size = 8 * (1 + (abi >= 4) + (abi >= 6))
        ruleset = syscall(LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
        if ruleset < 0:
            return 0
        for path, allowed in ((workdir, writes), (os.devnull, writes & (FS_WRITE_FILE | FS_TRUNCATE))):
            handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(allowed, handle)
                if syscall(LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1), ctypes.byref(rule),
                           ctypes.c_uint32(0)) != 0:
                    return 0
            finally:
                os.close(handle)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
                syscall(LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return 0
        return abi
    except (OSError, AttributeError):
        return 0
    finally:
        if ruleset >= 0:
            os.close(ruleset)
        for name in [name for name in sys.modules if name.split(".")[0] in ("ctypes", "_ctypes")]:
            del sys.modules[name]


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
        if TMPFILE_FLAG and (flags or 0) & TMPFILE_FLAG == TMPFILE_FLAG:
            if not inside(path):  # an unnamed file in that folder (tempfile.TemporaryFile); not a directory fd
                refuse("open", f"creating a file in {fsdecode(path)} outside {root}")
            return
        if mode is None and ((flags or 0) & DIRECTORY_FLAG or isdir(resolved(path))):
            # os.open's audit event does not carry dir_fd: a directory descriptor would let a later relative path
            # mean another place than the one checked here, so os.open hands none out (inside the folder either).
            # (open() never returns one: it refuses directories itself, and an opener's os.open is checked here.)
            refuse("open", f"opening the directory {fsdecode(path)}")
        writes = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        if writes and not inside(path):
            refuse("open", f"writing {fsdecode(path)} outside {root}")

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
    restrict_writes_to(workdir)
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
