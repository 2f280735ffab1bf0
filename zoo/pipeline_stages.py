"""Stage factories the other packages contribute to ``zoo run`` (ensemble, distill, export).

Each factory takes ``(ctx, Stage)`` and returns a list of stages; they are appended in this
order after training and evaluation.
"""

FACTORIES: list = []
