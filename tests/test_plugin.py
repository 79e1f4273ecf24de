"""The worked third-party plugin (docs/examples/hitbench-plugin-example) is found through its entry point.

The example package is pip-installed into a temporary folder (offline, no dependencies,
nothing added to the project's environment) that only subprocesses see on their path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pip-installs the example package, then runs subprocesses

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "hitbench-plugin-example"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses in which the example plugin is installed."""
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, work / "source")  # building writes build/ and *.egg-info next to the source
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", *"--quiet --no-deps --no-index --no-build-isolation".split()]
        + ["--target", str(target), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_plugin_is_not_installed_in_the_project_environment():
    names = _python("from hitbench.methods import registry; print(registry.names())", dict(os.environ))
    assert "brightest" not in names


def test_entry_point_makes_the_method_known(plugin_env):
    out = _python(
        "from hitbench.methods import registry\n"
        "print(registry.names())\n"
        "print(type(registry.get('brightest', n_spots=2)).__name__)\n"
        "print(registry.describe('brightest'))\n",
        plugin_env,
    )
    names, cls, description = out.splitlines()
    assert "'brightest'" in names and "'intensity'" in names
    assert cls == "BrightestSpot"
    assert description.startswith("The n-th largest pixel excess")


def test_cli_lists_the_plugin(plugin_env):
    out = _python(
        "from click.testing import CliRunner\n"
        "from hitbench.cli import main\n"
        "result = CliRunner().invoke(main, ['methods'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n",
        plugin_env,
    )
    assert "brightest" in out


def test_generic_method_checks_cover_the_plugin(plugin_env):
    """The generic test module runs the plugin through every check, with nothing added but the entry point."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "brightest",
            str(ROOT / "tests" / "test_methods.py"),
        ],
        env=plugin_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
