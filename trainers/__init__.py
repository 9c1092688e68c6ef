"""Trainer plug-ins: SFT and GRPO on TRL; see trainers/base.py for the contract.

``get_trainer(name)`` returns a trainer instance from ``harness.registry.TRAINERS``
(built-ins register here; third parties through the ``harness.trainers`` entry-point
group, whose objects are Trainer subclasses); ``load_config`` builds its config.
"""

from __future__ import annotations

from harness.registry import TRAINERS
from trainers.base import Checkpoint, Trainer, TrainerConfig
from trainers.config import build_config, load_config
from trainers.curr_rl import CurrRLConfig, CurrRLTrainer
from trainers.dcsft import TRAINERS as DCSFT_TRAINERS
from trainers.grpo import GRPOTrainer, GRPOTrainerConfig
from trainers.rs_sft import RSSFTConfig, RSSFTTrainer
from trainers.sft import SFTTrainer, SFTTrainerConfig

TRAINERS.register("sft", SFTTrainer)
TRAINERS.register("grpo", GRPOTrainer)
TRAINERS.register("curr_rl", CurrRLTrainer)
TRAINERS.register("rs_sft", RSSFTTrainer)
for _name, _trainer in DCSFT_TRAINERS.items():  # sft_m, sft_em, sft_e, sft_h
    TRAINERS.register(_name, _trainer)


def get_trainer(name: str) -> Trainer:
    """An instance of the registered trainer ``name`` (UnknownName lists the known ones)."""
    return TRAINERS.get(name)()


__all__ = ["Checkpoint", "CurrRLConfig", "CurrRLTrainer", "GRPOTrainer", "GRPOTrainerConfig", "RSSFTConfig",
           "RSSFTTrainer", "SFTTrainer",
           "SFTTrainerConfig", "Trainer", "TrainerConfig", "build_config", "get_trainer", "load_config"]
