"""Python client of satlab.v1.TrainingService.

    import numpy as np, satlab
    with satlab.Client("127.0.0.1:50051") as c:
        net = c.create_network(input_size=1, layers=[(1, "sigmoid")], loss="mse")
        g, other = c.compute_gradients(net, np.ones((1, 1)), np.zeros((1, 1)),
                                       counterfactual_losses=["bce"])

Run client/python/generate.py once first: it writes the protobuf stubs that
this package imports (satlab/v1, satlab/_std). The names below load on first
use, so `satlab._std` (health, reflection) can be imported without the
satlab.v1 descriptors.
"""

import importlib

_EXPORTS = {
    "Client": "satlab.client",
    "Gradients": "satlab.client",
    "sgd": "satlab.client",
    "adam": "satlab.client",
    "SERVICE_NAME": "satlab.client",
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
            raise ImportError("satlab: the generated stubs are missing; run "
                              f"client/python/generate.py ({e})") from e
        raise
