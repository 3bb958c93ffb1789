"""The installed satlab package: where it lives, what the wheel carries, and
that its public API is typed and documented."""

import importlib.metadata
import inspect
import pathlib
import re
import sys
import typing
import unittest

import satlab
from satlab import client as client_mod


class PackageTest(unittest.TestCase):
    def test_Import_ComesFromTheVenvWithGeneratedStubs(self):
        root = pathlib.Path(satlab.__file__).resolve().parent
        self.assertTrue(root.is_relative_to(pathlib.Path(sys.prefix).resolve()), root)
        for stub in ("v1/training_service_pb2.py", "v1/training_service_pb2_grpc.py",
                     "v1/tensor_pb2.py", "_std/health_pb2_grpc.py", "_std/reflection_pb2_grpc.py",
                     "py.typed"):
            self.assertTrue((root / stub).is_file(), f"{stub} missing from the installed package")
        from satlab.v1 import training_service_pb2
        methods = training_service_pb2.DESCRIPTOR.services_by_name["TrainingService"].methods_by_name
        self.assertIn("RunExperiment", methods)

    def test_Metadata_DependsOnDebiansPackagesOnly(self):
        dist = importlib.metadata.distribution("satlab")
        self.assertEqual(dist.version, "0.1.0")
        requires = {re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in dist.requires or []
                    if "extra ==" not in r}
        self.assertTrue({"grpcio", "protobuf", "numpy"} <= requires, requires)
        for name in ("grpcio", "protobuf", "numpy"):
            # Resolved from Debian's dist-packages through --system-site-packages.
            location = str(importlib.metadata.distribution(name).locate_file(""))
            self.assertIn("/usr/lib/python3/dist-packages", location, name)

    def test_PublicApi_TypedAndDocumented(self):
        public = [getattr(satlab, n) for n in satlab.__all__ if callable(getattr(satlab, n))]
        methods = [m for n, m in inspect.getmembers(satlab.Client, inspect.isfunction)
                   if not n.startswith("_") or n == "__init__"]
        self.assertGreaterEqual(len(methods), 16)
        for fn in public + methods:
            if inspect.isclass(fn):
                self.assertTrue(fn.__doc__, f"{fn.__name__} has no docstring")
                continue
            name = fn.__qualname__
            self.assertTrue(fn.__doc__ or name == "Client.__init__", f"{name} has no docstring")
            hints = typing.get_type_hints(fn, globalns=vars(client_mod) | vars(sys.modules[fn.__module__]))
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            missing = [p.name for p in params if p.name not in hints]
            self.assertEqual(missing, [], f"{name}: parameters without annotations")
            self.assertIn("return", hints, f"{name}: no return annotation")


if __name__ == "__main__":
    unittest.main()
