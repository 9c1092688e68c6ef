"""What the crash campaign's fork server imports once (tests/crash_driver.py): the modules a
harness eval, profile, training run and study import, so that each command forked from it
starts in about a second instead of importing torch, transformers and TRL again (7 s or more).
Importing it does nothing else."""

from harness.compat.torchvision_cpu import ensure_torchvision

ensure_torchvision()  # before anything imports torchvision (harness/compat/torchvision_cpu.py)

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # as trainers/plots.py does

import matplotlib.pyplot  # noqa: E402, F401
import peft  # noqa: E402, F401
import transformers  # noqa: E402, F401
from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer  # noqa: E402, F401
from transformers.models.qwen2_vl import image_processing_qwen2_vl, modeling_qwen2_vl  # noqa: E402, F401
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer  # noqa: E402, F401

import harness.backends.hf  # noqa: E402, F401
import harness.cli  # noqa: E402, F401
import harness.difficulty  # noqa: E402, F401
import harness.evaluator  # noqa: E402, F401
import harness.overlap  # noqa: E402, F401
import harness.paper_study  # noqa: E402, F401
import harness.study  # noqa: E402, F401
import leaderboards.report  # noqa: E402, F401
import trainers.grpo  # noqa: E402, F401
import trainers.sft  # noqa: E402, F401
