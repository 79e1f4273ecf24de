"""Checks shared by the test modules: the one-line error of the CLI, a CLI run that pauses to be interrupted, and a
crafted pickle."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from click.testing import Result

#: The prefix of every user error the CLI prints (hitbench.cli).
ERROR_PREFIX = "hitbench: error:"

#: Child process of :func:`interruptible`: runs the CLI with ``module.attr`` wrapped so that after its
#: first call returns the child touches the readiness file and sleeps until a signal stops it.
_PAUSED_CLI = """
import importlib, pathlib, signal, sys, time
# Ctrl-C as a terminal delivers it: the test process may pass SIGINT on ignored (a disposition children inherit)
signal.signal(signal.SIGINT, signal.default_int_handler)
module_name, attr, ready, *args = sys.argv[1:]
module = importlib.import_module(module_name)
original = getattr(module, attr)
def paused(*a, **k):
    result = original(*a, **k)
    pathlib.Path(ready).touch()
    time.sleep(600)
    return result
setattr(module, attr, paused)
from hitbench.cli import main
main(args, prog_name="hitbench")
"""


class Payload:
    """A crafted pickle: unpickling it creates the file it names (as a crafted model file could run a shell command).

    Parameters
    ----------
    path : Path
        The witness file; it exists only if something unpickled the payload.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


def assert_one_line_error(result: Result | subprocess.CompletedProcess, *fragments: str) -> str:
    """Check that a CLI run failed with one ``hitbench: error:`` line naming every fragment, and no traceback.

    Parameters
    ----------
    result : click.testing.Result or subprocess.CompletedProcess
        An in-process run (``CliRunner().invoke``) or a run of the installed entry point with
        ``capture_output=True, text=True``.
    *fragments : str
        Text the error line must contain (a file name, the field at fault, what to do).

    Returns
    -------
    str
        The error line.
    """
    if isinstance(result, subprocess.CompletedProcess):
        code, stdout, stderr = result.returncode, result.stdout or "", result.stderr or ""
    else:
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert code == 1, (code, stderr, stdout)  # not a crash (negative: a signal) nor a traceback (exit 1 after one)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n") and stderr.startswith(ERROR_PREFIX), stderr
    line = stderr.rstrip("\n")
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def interruptible(args: list[object], pause_after: str, ready: Path) -> subprocess.Popen:
    """Start the CLI in a child process that pauses, ready to be interrupted, once a step has been done.

    The child wraps ``pause_after`` (``package.module.function``, as the code calls it) so that after
    its first call returns it creates ``ready`` and sleeps; a signal sent after :func:`wait_until_ready`
    therefore always finds the command mid-way, with that step's outputs on disk and the rest to do.

    Parameters
    ----------
    args : list
        The CLI's arguments (without ``hitbench``).
    pause_after : str
        Dotted name of the function to pause after.
    ready : Path
        File the child creates when it pauses (must not exist yet).

    Returns
    -------
    subprocess.Popen
        The child, with stdout and stderr as text pipes.
    """
    module, attr = pause_after.rsplit(".", 1)
    command = [sys.executable, "-c", _PAUSED_CLI, module, attr, str(ready), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_ready(proc: subprocess.Popen, ready: Path, timeout: float = 180) -> None:
    """Wait for an :func:`interruptible` child to pause; fail if it ends or takes longer than ``timeout`` s."""
    end = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the command ended (exit {proc.returncode}) before it paused:\n{err}")
        if time.monotonic() > end:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"the command did not pause within {timeout} s")
        time.sleep(0.05)
