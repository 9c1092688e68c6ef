"""Built-in tasks and suites. Importing this package registers them."""

import tasks.synthetic  # noqa: F401
