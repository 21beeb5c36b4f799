"""``python -m aiflat_gui.cli ARGV`` in a child process, without paying the interpreter start and the
imports (numpy, OpenCV, SciPy: ~1 s of CPU) for every call.

A server process imports ``aiflat_gui.cli`` once; for each request it forks a child that does what
``python -m aiflat_gui.cli`` does after its imports: ``sys.argv`` set, the module run as
``__main__`` (``runpy``), non-daemon threads joined and ``atexit`` handlers run, then exit with
the code. The child has its own working folder, environment, standard streams (files, read back by
the caller), address-space limit (``RLIMIT_AS``) and time limit, so what the tests of
tests/test_safety.py and tests/fuzz_harness.py check -- the exit code, every line of stderr, a
segfault or SIGBUS (a negative code, as from :mod:`subprocess`), a hang (``TimeoutExpired``) or a
memory blow-up under the limit -- is the command line's own behaviour, in a process of its own.

Tests that signal the process or look at its children start a real interpreter instead
(``subprocess.Popen``)."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional, Sequence, Union

#: the server's environment for what is read when the libraries are imported (as tests/test_safety.py
#: and tests/fuzz_harness.py give their fresh interpreters)
IMPORT_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


# -- the server (runs in its own process) ---------------------------------------------------------------

def _child(req: dict) -> None:
    """In the forked child: become ``python -m aiflat_gui.cli ARGV``; never returns."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (devnull, out, err, *req["_close"]):
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        if req.get("mem"):
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (req["mem"], req["mem"]))
        import runpy

        sys.argv = ["-m", *req["argv"]]  # runpy sets argv[0] to the module's file, as `python -m` does
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        try:
            runpy.run_module("aiflat_gui.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter prints for an uncaught exception
            import traceback

            traceback.print_exc()
            code = 1
        # the interpreter's own shutdown: wait for non-daemon threads, then atexit, then flush
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream, as at interpreter exit
                pass
    except BaseException:  # noqa: BLE001 - never fall back into the server's loop
        try:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(120)
    os._exit(code & 0xFF)


def serve() -> None:
    import select
    import signal

    import aiflat_gui
    import aiflat_gui.cli  # noqa: F401 - the imports every child shares

    # ... but not the module itself: `python -m` runs its code as __main__ and nothing else has it
    del sys.modules["aiflat_gui.cli"]
    del aiflat_gui.cli

    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    for line in proto_in:
        req = json.loads(line)
        req["_close"] = [proto_in.fileno(), proto_out.fileno()]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(req)
        pidfd = os.pidfd_open(pid)
        ready, _, _ = select.select([pidfd], [], [], req["timeout"])
        timed_out = not ready
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        proto_out.write(json.dumps({"code": code, "timeout": timed_out}).encode() + b"\n")
        proto_out.flush()


# -- the caller's side ----------------------------------------------------------------------------------

_lock = threading.Lock()
_server: Optional[subprocess.Popen] = None
_tmp: Optional[tempfile.TemporaryDirectory] = None


def _stop() -> None:
    global _server, _tmp
    if _server is not None:
        _server.stdin.close()  # type: ignore[union-attr]
        try:
            _server.wait(10)
        except subprocess.TimeoutExpired:
            _server.kill()
            _server.wait()
        _server = None
    if _tmp is not None:
        _tmp.cleanup()
        _tmp = None


def _ensure() -> subprocess.Popen:
    global _server, _tmp
    if _server is None or _server.poll() is not None:
        env = dict(os.environ, **IMPORT_ENV)
        env.pop("AIFLAT_DEBUG", None)
        _server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=env, cwd=os.getcwd())
        if _tmp is None:
            _tmp = tempfile.TemporaryDirectory(prefix="aiflat-cli-")
            atexit.register(_stop)
    return _server


def run(argv: Sequence[Union[str, bytes, os.PathLike]], *, cwd=None, env: Optional[dict] = None,
        mem: Optional[int] = None, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """``python -m aiflat_gui.cli ARGV`` with ``env`` (default: this process's environment) in
    ``cwd``, under an address-space limit of ``mem`` bytes: a CompletedProcess with bytes
    stdout/stderr and the return code (negative: killed by that signal); TimeoutExpired after
    ``timeout`` seconds (the child is killed)."""
    args = [os.fsdecode(a) for a in argv]  # bytes names pass as surrogate escapes, as argv does
    with _lock:
        server = _ensure()
        assert _tmp is not None
        out, err = Path(_tmp.name) / "stdout", Path(_tmp.name) / "stderr"
        req = {"argv": args, "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
               "env": dict(os.environ if env is None else env), "mem": mem, "timeout": timeout,
               "stdout": str(out), "stderr": str(err)}
        server.stdin.write(json.dumps(req).encode() + b"\n")  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]
        line = server.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the aiflat fork server died")
        res = json.loads(line)
        stdout, stderr = out.read_bytes(), err.read_bytes()
    shown = ["python", "-m", "aiflat_gui.cli", *args]
    if res["timeout"]:
        raise subprocess.TimeoutExpired(shown, timeout, stdout, stderr)
    return subprocess.CompletedProcess(shown, res["code"], stdout, stderr)


if __name__ == "__main__":
    serve()
