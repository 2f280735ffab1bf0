"""bloodcell zoo: blood-cell image classification members, ensembles, distillation and ONNX export.

The model API is timm's: ``create_model(name, num_classes, image_size, **params)`` and
``list_models(pattern)``.
"""

from zoo.errors import ZooError
from zoo.registry import create_model, get_spec, list_models, register_model
from zoo.version import version as _version

__version__ = _version()

__all__ = ["ZooError", "create_model", "get_spec", "list_models", "register_model", "__version__"]
