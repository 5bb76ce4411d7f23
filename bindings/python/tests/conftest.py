"""Shared fixtures of the ivyrt test suite.

The suite tests the *installed* package (run-tests.sh installs it first): the
source tree's python/ directory is never put on sys.path here.
"""

import pathlib
import subprocess
import sys
import textwrap

import pytest

import ivyrt

SOURCE_PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "python" / "ivyrt"


@pytest.fixture(scope="session", autouse=True)
def _report_which_package():
    location = pathlib.Path(ivyrt.__file__).resolve().parent
    print(f"ivyrt {ivyrt.__version__} from {location}"
          f"{' (source tree: an editable install)' if location == SOURCE_PACKAGE else ''}")
    yield


@pytest.fixture
def run_script(tmp_path):
    """Runs Python code in a fresh interpreter; returns CompletedProcess."""

    def run(code: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        script = tmp_path / "script.py"
        script.write_text(textwrap.dedent(code))
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=timeout, **kw)

    return run
