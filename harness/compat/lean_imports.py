"""Imports transformers would make at start-up that the harness never uses.

``transformers.generation`` imports ``sklearn.metrics`` whenever scikit-learn is
installed, for one feature: tuning an assistant model's confidence threshold in
assisted (speculative) generation. Neither the evaluator nor the trainers use assisted
generation, and importing scikit-learn costs about 2.4 s here (measured with
``python -X importtime`` in the lmms-eval environment, which installs scikit-learn):
a sixth of a 300-sample tiny-model eval. :func:`skip_sklearn_in_transformers`, called
before transformers' generation code is first imported, tells transformers that
scikit-learn is absent; scikit-learn itself stays importable by anyone who asks.
"""

from __future__ import annotations

import sys


def skip_sklearn_in_transformers() -> bool:
    """True if transformers will now skip scikit-learn; False if too late (its generation
    code is already imported, or sklearn is) or this transformers has no such check."""
    if "sklearn" in sys.modules or "transformers.generation.candidate_generator" in sys.modules:
        return False
    try:
        import transformers.utils as utils
        import transformers.utils.import_utils as import_utils
    except ImportError:
        return False
    if not hasattr(import_utils, "is_sklearn_available"):
        return False

    def is_sklearn_available() -> bool:
        return False

    import_utils.is_sklearn_available = is_sklearn_available
    utils.is_sklearn_available = is_sklearn_available
    return True
