"""Trainer plug-ins (SFT, GRPO, Curr-RL, DC-SFT) register here; see trainers/base.py."""

import trainers.base  # noqa: F401
