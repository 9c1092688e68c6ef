"""Math reasoning families (MathVista, Math360K / Geo170K, Curr-ReFT rows, CLEVR counting);
importing registers their tasks and suites. docs/tasks/math.md describes them."""

from harness.registry import SUITES
from harness.suite import Suite
from tasks.math import clevr, conversations, mathvista, rows  # noqa: F401

SUITES.register("math", Suite(
    "math", "math_train", ("math_id",), ("clevr_count_val", "mathvista_testmini"),
    "MathV360K + Geo170K -> a held-out 1,000 of them; OOD: CLEVR counting and the MathVista testmini benchmark"))
SUITES.register("curr_reft_math", Suite(
    "curr_reft_math", "curr_reft_math_train", ("curr_reft_math_test",), ("superclevr_count200",),
    "Curr-ReFT's math: its Math360K/Geo170K rows -> its test rows; OOD: 200 Super-CLEVR counting questions"))
