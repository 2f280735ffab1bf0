"""Member families. Importing this package registers every builder with :mod:`zoo.registry`.

One module (or folder) per family, keras-hub style; each adds itself with ``@register_model``.
"""

from zoo.models import (
    convnext,  # noqa: F401
    custom_cnn,  # noqa: F401
    mobilenet_v3,  # noqa: F401
    resize,  # noqa: F401  (registers the in-graph resize layer for loading)
)
