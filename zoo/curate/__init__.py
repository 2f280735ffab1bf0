"""Data curation: what is in a dataset (counts, sizes), what is wrong with it (unreadable files,
exact/near duplicates and cross-split leakage, non-cell outliers), and a cleaned copy.

``inspect(source, out=None, **thresholds) -> report dict`` and ``clean(source, out, mode=…)``
take a class-folder path, any other ``zoo.data.load_dataset`` source, or a loaded Dataset.
Nothing here modifies or deletes the user's files.
"""

from zoo.curate.clean import MODES, clean
from zoo.curate.inspection import CurateConfig, inspect, run_inspection

__all__ = ["inspect", "clean", "run_inspection", "CurateConfig", "MODES"]
