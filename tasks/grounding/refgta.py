"""RefGTA (Tanaka et al., ICCV 2019): referring expressions for people in GTA V scenes.

Curr-ReFT's out-of-domain detection split. Upstream is github.com/mikittt/easy-to-understand-REG
(``pyutils/refer2``, a refer API with ``REFER(data_root, image_root, 'refgta', 'utokyo')``);
annotations and images come from its Google Drive links. Under the data root::

    refgta/instances.json         COCO-style: images {id, file_name, width, height},
                                  annotations {id, image_id, bbox [x, y, w, h], category_id}, categories
    refgta/refs(utokyo).p         pickle: list of refs {ref_id, ann_id, image_id, split, category_id,
                                  sentences: [{sent_id, sent, raw, tokens, ...}]}
    refgta/gtav_cv_mod_data/<file_name>   the GTA images (upstream's default gta_image_root, holding
                                  dont_specify/, black_wearing/, white_wearing/), or --data_args refgta_images=DIR

This is the refer layout, so the files are read and checked by ``tasks.grounding.refer``
(``ReferTask``, ``ref_entries``): the image is the instances.json image with the ref's
``image_id``, the box that of the ref's ``ann_id``; one sample per sentence, in pickle order
of refs and then sentences; the sample id is the ``sent_id``, the expression ``sent``
(stripped, and an empty one is an error). Splits follow refer's ``getRefIds``
(``refer.in_split``): ``val`` is ``split == 'val'``, ``test`` every split containing ``test``.
Only the image root differs from RefCOCO: the GTA images live under the dataset's own
directory, not COCO's.

Curr-ReFT evaluates a 1,000-sample subsample (``refgta_subsample_resize.json``, with images
downscaled into ``final_resize``) that its repository does not ship in a readable form;
these tasks are the whole upstream splits.
"""

from __future__ import annotations

from harness.data import DatasetSpec
from harness.registry import SUITES, define_task
from harness.suite import Suite
from tasks.grounding.refer import ReferTask

SPLIT_BY = "utokyo"
REFS_FILE = f"refs({SPLIT_BY}).p"

REFGTA = DatasetSpec(
    name="refgta",
    directory="refgta",
    source="https://github.com/mikittt/easy-to-understand-REG (pyutils/refer2; annotations and GTA images "
           "from its Google Drive links)",
    layout=(f"refgta/instances.json, refgta/{REFS_FILE}, refgta/gtav_cv_mod_data/<file_name> (the GTA image "
            "root holding dont_specify/, black_wearing/, white_wearing/; or --data_args refgta_images=DIR)"),
    required=("instances.json", REFS_FILE),
    image_option="refgta_images",
    images="gtav_cv_mod_data",
)


class RefGTATask(ReferTask):
    dataset = REFGTA
    refer_dataset = "refgta"
    split_by = SPLIT_BY
    refer_split = "test"
    nonempty_expressions = True
    id_doc = "the sentence's sent_id in refs(utokyo).p"


def _define(name: str, split: str, description: str) -> type:
    return define_task(RefGTATask, name, "ood", description, refer_split=split)


_define("refgta_val", "val", "RefGTA val (GTA V people, utokyo split): synthetic-domain referring expressions")
_define("refgta_test", "test", "RefGTA test (GTA V people, utokyo split): Curr-ReFT's OOD detection split")

SUITES.register("curr_reft_det", Suite(
    "curr_reft_det", "refcoco_train", ("refcoco_val",), ("refgta_test",),
    "Curr-ReFT visual detection: RefCOCO grounding; OOD: RefGTA (GTA V renderings)"))
