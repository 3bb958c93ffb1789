"""Build step of the satlab Python package: generates the gRPC stubs.

pyproject.toml holds the metadata; this file only hooks build_py so that
satlab/v1 (from proto/satlab/v1/*.proto) and satlab/_std (health,
reflection) are generated with Debian's protoc and grpc_python_plugin into
the build tree, and so into the wheel. The protos are read from the
repository checkout (../../proto, or $SATLAB_PROTO_ROOT).
"""

import os
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        sys.path.insert(0, str(HERE))
        import generate

        proto_root = pathlib.Path(os.environ.get("SATLAB_PROTO_ROOT", generate.PROTO_ROOT))
        generate.generate_into(pathlib.Path(self.build_lib), proto_root)


setup(cmdclass={"build_py": BuildPyWithStubs})
