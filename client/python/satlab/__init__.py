"""Python client of satlab.v1.TrainingService.

    import numpy as np, satlab
    with satlab.Client("127.0.0.1:50051") as c:
        net = c.create_network(input_size=1, layers=[(1, "sigmoid")], loss="mse")
        g, other = c.compute_gradients(net, np.ones((1, 1)), np.zeros((1, 1)),
                                       counterfactual_losses=["bce"])

Install: `pip install --no-index --no-build-isolation client/python` (into a
venv made with `python3 -m venv --system-site-packages`, so Debian's grpcio,
protobuf and numpy are used); the build generates the protobuf stubs
(satlab.v1, satlab._std) into the wheel. From a checkout without installing,
run client/python/generate.py once and put client/python on sys.path.

The names below load on first use, so `satlab._std` (health, reflection) can
be imported without the satlab.v1 descriptors.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lazy exports, for type checkers and IDEs
    from satlab.client import SERVICE_NAME, Client, Gradients, adam, sgd, tls_credentials  # noqa: F401
    from satlab.tensor import from_tensor, to_tensor  # noqa: F401

_EXPORTS = {
    "Client": "satlab.client",
    "Gradients": "satlab.client",
    "sgd": "satlab.client",
    "adam": "satlab.client",
    "SERVICE_NAME": "satlab.client",
    "tls_credentials": "satlab.client",
    "to_tensor": "satlab.tensor",
    "from_tensor": "satlab.tensor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'satlab' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        if "satlab.v1" in str(e) or "satlab._std" in str(e):
            raise ImportError("satlab: the generated stubs are missing; install the "
                              "package (pip install client/python) or run "
                              f"client/python/generate.py ({e})") from e
        raise
