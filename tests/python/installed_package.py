"""Installs the satlab Python package the way a user would, into a throwaway
venv, so that tests exercise the installed package and not the source tree.

    python = install_into_venv(tmpdir)   # path of the venv's python

Steps: `/usr/bin/python3 -m venv --system-site-packages` (Debian's grpcio,
protobuf, numpy, matplotlib, setuptools and wheel stay visible), then
`pip install --no-index --no-build-isolation` of a clean copy of
client/python (the copy keeps the build's scratch files out of the checkout
and proves the package builds from its own directory plus proto/).
"""

import os
import pathlib
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
PACKAGE_SRC = REPO / "client" / "python"
SYSTEM_PYTHON = "/usr/bin/python3"


def install_into_venv(tmpdir):
    tmpdir = pathlib.Path(tmpdir)
    venv = tmpdir / "venv"
    src = tmpdir / "src"
    shutil.copytree(PACKAGE_SRC, src, ignore=_scratch)
    _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)])
    python = venv / "bin" / "python"
    env = dict(os.environ, SATLAB_PROTO_ROOT=str(REPO / "proto"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
          str(src)], env=env, cwd=tmpdir)
    # The checkout copy goes away: only the installed package can answer.
    shutil.rmtree(src)
    return python


def _scratch(directory, names):
    """What a clean checkout lacks: build output and generated stubs."""
    skip = {"build", "__pycache__", ".stamp", ".generate.lock", "examples"}
    if pathlib.Path(directory).resolve() == (PACKAGE_SRC / "satlab").resolve():
        skip |= {"v1", "_std"}  # generated into the tree by generate.py
    return [n for n in names if n in skip or n.endswith(".egg-info")]


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"installed_package: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
