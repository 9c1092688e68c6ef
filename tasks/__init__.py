"""Built-in tasks and suites. Importing this package registers them."""

import tasks.classification  # noqa: F401
import tasks.detection  # noqa: F401
import tasks.grounding  # noqa: F401
import tasks.math  # noqa: F401
import tasks.synthetic  # noqa: F401
