"""Tables from run directories.

``table``: the single-run eval table (``harness eval``/``score``); ``collect``, ``board``,
``significance`` and ``render``: ``harness leaderboard`` over many runs; ``regress``:
``harness regress`` against a committed baseline; ``cli``: both subcommands.
"""
