"""DC-SFT's released ImageNet-100 splits, reproduced from its data files.

===========================  =====  ===========================================================
task                         role   samples (full data)
===========================  =====  ===========================================================
``imagenet100dcsft_train``   train  the 10,000 ImageNet-1K train images DC-SFT lists (100 x 100)
``imagenet100dcsft_val``     id     every val image of DC-SFT's 100 classes (5,000)
``imagenet_r_dcsft``         ood    every ImageNet-R image of DC-SFT's 68 R classes (10,741)
``imagenet_a_dcsft``         ood    every ImageNet-A image of DC-SFT's 87 A classes (3,015)
===========================  =====  ===========================================================

DC-SFT (github.com/byyx666/DC-SFT) released its rows rather than the script that made
them, so the class lists below are read from those files (commit ``SOURCE_COMMIT``):
``data/imagenet_val_processed.json`` (the 100 training classes, 50 val images each),
``data/imagenet-r_val_processed.json`` and ``data/imagenet-a_val_processed.json`` (the OOD
classes, with every image of each class), ``data/imagenet_cold_sft.json`` +
``data/imagenet_left_grpo.json`` (the 10,000 train images, shipped as
``data/dcsft_imagenet100_train.json.gz``). Every one of their 186 classes is a class whose
line in ``LOC_synset_mapping.txt`` is a single name without a space, and the OOD files hold
exactly those classes of ImageNet-R's and ImageNet-A's 200, not only the 100 trained on.
Their labels equal that single name. ``tasks.classification.imagenet`` is the seeded
reconstruction from the paper's text; docs/tasks/imagenet.md compares the two.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.data import DatasetMissing, DatasetSpec, require_file
from harness.registry import SUITES, TASKS
from harness.suite import Suite
from tasks.classification.imagenet import (
    IMAGENET_TRAIN,
    IMAGENET_VAL,
    MAPPING,
    ImageNetTask,
    Synset,
    _images,
    class_folders,
    read_mapping,
)

SOURCE = "https://github.com/byyx666/DC-SFT"
SOURCE_COMMIT = "87b87b788fb0589ecab8edb328beb71fd9b26004"
PROMPT = "Please provide the object name in the image. Output the answer using one word."
TRAIN_LIST = Path(__file__).parent / "data" / "dcsft_imagenet100_train.json.gz"

# wnid, DC-SFT's label, and how many rows DC-SFT's files hold for the class in ImageNet val,
# ImageNet-R and ImageNet-A (0: not in that file). Read from the data/*.json files at SOURCE_COMMIT.
_TABLE = """
n01498041 stingray 50 103 76
n01514859 hen 0 222 0
n01560419 bulbul 50 0 0
n01580077 jay 0 0 59
n01592084 chickadee 50 0 0
n01616318 vulture 0 182 76
n01631663 eft 50 0 56
n01687978 agama 0 0 70
n01704323 triceratops 50 0 0
n01770393 scorpion 0 216 98
n01774750 tarantula 50 143 42
n01784675 centipede 0 110 62
n01796340 ptarmigan 50 0 0
n01806143 peacock 0 160 0
n01807496 partridge 50 0 0
n01820546 lorikeet 0 127 96
n01824575 coucal 50 0 0
n01833805 hummingbird 0 346 98
n01843065 jacamar 50 0 0
n01843383 toucan 0 352 49
n01847000 drake 0 185 68
n01855672 goose 50 123 97
n01910747 jellyfish 50 309 89
n01944390 snail 0 263 77
n01945685 slug 50 0 0
n02007558 flamingo 50 377 70
n02018795 bustard 50 0 0
n02051845 pelican 0 139 54
n02085620 Chihuahua 50 155 21
n02086240 Shih-Tzu 0 72 0
n02088364 beagle 0 111 0
n02088632 bluetick 50 0 0
n02091134 whippet 0 117 0
n02092339 Weimaraner 50 76 0
n02105056 groenendael 50 0 0
n02105412 kelpie 50 0 0
n02106030 collie 0 79 0
n02106550 Rottweiler 0 108 35
n02107908 Appenzeller 50 0 0
n02108089 boxer 0 83 0
n02110806 basenji 50 0 0
n02112018 Pomeranian 0 91 0
n02112350 keeshond 50 0 0
n02137549 mongoose 0 0 57
n02177972 weevil 0 0 3
n02190166 fly 50 80 99
n02206856 bee 0 381 97
n02259212 leafhopper 50 0 40
n02326432 hare 50 0 0
n02361337 marmot 0 0 23
n02363005 beaver 50 172 0
n02391049 zebra 0 185 0
n02397096 warthog 50 0 0
n02410509 bison 0 246 17
n02422106 hartebeest 50 0 0
n02423022 gazelle 0 139 0
n02437616 llama 0 161 0
n02441942 weasel 50 0 0
n02447366 badger 50 125 0
n02454379 armadillo 0 0 24
n02486410 baboon 0 133 7
n02487347 macaque 50 0 0
n02526121 eel 50 112 0
n02666196 abacus 50 0 0
n02690373 airliner 0 0 25
n02699494 altar 50 0 0
n02701002 ambulance 0 98 7
n02730930 apron 0 0 22
n02782093 balloon 50 0 32
n02787622 banjo 0 0 10
n02791270 barbershop 50 0 0
n02793495 barn 0 78 25
n02799071 baseball 50 0 0
n02802426 basketball 0 161 46
n02804610 bassoon 50 0 0
n02815834 beaker 0 0 7
n02843684 birdhouse 50 130 0
n02879718 bow 50 0 25
n02906734 broom 0 178 35
n02950826 cannon 50 73 0
n02951358 canoe 0 92 10
n02971356 carton 50 0 0
n02980441 castle 0 143 14
n02981792 catamaran 50 0 0
n02999410 chain 0 0 62
n03014705 chest 0 0 14
n03045698 cloak 50 0 0
n03125729 cradle 50 0 7
n03141823 crutch 50 0 0
n03220513 dome 50 0 0
n03250847 drumstick 0 0 15
n03255030 dumbbell 0 0 19
n03291819 envelope 50 0 36
n03384352 forklift 0 0 13
n03388043 fountain 50 0 26
n03443371 goblet 0 0 28
n03444034 go-kart 0 0 11
n03450230 gown 50 0 0
n03467068 guillotine 0 71 0
n03481172 hammer 0 170 0
n03482405 hamper 50 0 0
n03495258 harp 0 133 0
n03498962 hatchet 0 98 0
n03527444 holster 50 0 0
n03584254 iPod 50 0 0
n03590841 jack-o'-lantern 0 0 24
n03602883 joystick 0 86 0
n03617480 kimono 0 0 27
n03627232 knot 50 0 0
n03662601 lifeboat 50 0 0
n03710637 maillot 50 0 0
n03720891 maraca 0 0 15
n03724870 mask 0 0 47
n03729826 matchstick 50 0 0
n03770679 minivan 50 0 0
n03773504 missile 0 97 0
n03775071 mitten 0 77 31
n03777754 modem 50 0 0
n03786901 mortar 50 0 0
n03788195 mosque 0 0 15
n03794056 mousetrap 50 0 0
n03804744 nail 0 0 8
n03814906 necklace 50 0 0
n03837869 obelisk 0 0 20
n03866082 overskirt 50 0 0
n03874599 padlock 50 0 0
n03924679 photocopier 50 0 0
n03938244 pillow 50 0 0
n03976657 pole 50 0 0
n04009552 projector 50 0 0
n04067472 reel 50 0 13
n04125021 safe 50 0 0
n04133789 sandal 0 91 46
n04141327 scabbard 50 0 0
n04147183 schooner 0 92 16
n04153751 screw 50 0 0
n04208210 shovel 50 0 17
n04252077 snowmobile 50 0 13
n04270147 spatula 50 0 20
n04296562 stage 50 0 0
n04317175 stethoscope 0 0 17
n04325704 stole 0 83 0
n04330267 stove 50 0 0
n04355338 sundial 50 0 19
n04371774 swing 50 0 0
n04376876 syringe 0 0 11
n04429376 throne 50 0 0
n04442312 toaster 0 0 16
n04456115 torch 0 0 24
n04462240 toyshop 50 0 0
n04465501 tractor 0 193 0
n04483307 trimaran 50 0 0
n04487394 trombone 0 97 0
n04501370 turnstile 50 0 0
n04507155 umbrella 0 0 31
n04522168 vase 0 160 0
n04523525 vault 50 0 0
n04532670 viaduct 50 0 18
n04540053 volleyball 0 0 27
n04584207 wig 50 0 0
n04606251 wreck 50 0 11
n07565083 menu 50 0 0
n07583066 guacamole 0 0 20
n07584110 consomme 50 0 0
n07695742 pretzel 0 113 10
n07697313 cheeseburger 50 285 16
n07714990 broccoli 0 153 12
n07730033 cardoon 50 0 0
n07734744 mushroom 0 430 98
n07745940 strawberry 0 277 0
n07747607 orange 50 0 0
n07749582 lemon 0 176 23
n07753592 banana 50 246 23
n07768694 pomegranate 0 117 45
n07831146 carbonara 50 0 15
n07880968 burrito 50 67 0
n07920052 espresso 0 93 0
n07932039 eggnog 50 0 0
n09229709 bubble 0 0 41
n09288635 geyser 50 0 0
n09472597 volcano 0 211 19
n11879895 rapeseed 0 0 17
n11939491 daisy 50 0 0
n12144580 corn 0 0 18
n12267677 acorn 0 189 23
n12998815 agaric 50 0 0
"""


def _parse_table(text: str) -> dict[str, tuple[str, int, int, int]]:
    out: dict[str, tuple[str, int, int, int]] = {}
    for line in text.split("\n"):
        if line.strip():
            wnid, label, n_val, n_r, n_a = line.split()
            out[wnid] = (label, int(n_val), int(n_r), int(n_a))
    return out


CLASSES: dict[str, tuple[str, int, int, int]] = _parse_table(_TABLE)
LABELS: dict[str, str] = {w: row[0] for w, row in CLASSES.items()}
TRAIN_CLASSES: tuple[str, ...] = tuple(w for w, row in CLASSES.items() if row[1])
R_CLASSES: tuple[str, ...] = tuple(w for w, row in CLASSES.items() if row[2])
A_CLASSES: tuple[str, ...] = tuple(w for w, row in CLASSES.items() if row[3])
# (the number of rows per class in DC-SFT's file, by split name)
EXPECTED: dict[str, dict[str, int]] = {
    "val": {w: CLASSES[w][1] for w in TRAIN_CLASSES},
    "r": {w: CLASSES[w][2] for w in R_CLASSES},
    "a": {w: CLASSES[w][3] for w in A_CLASSES},
}


@lru_cache(maxsize=1)
def train_files() -> dict[str, dict[str, list[str]]]:
    """``{wnid: {"cold_start": [file names], "pool": [file names]}}``: DC-SFT's train images."""
    with gzip.open(TRAIN_LIST, "rt", encoding="utf-8") as fh:
        return json.load(fh)["classes"]


_R_SPEC = DatasetSpec(
    "ImageNet-R", "imagenet-r", "https://github.com/hendrycks/imagenet-r (imagenet-r.tar)",
    f"imagenet-r/<wnid>/*.jpg (200 class folders; DC-SFT's 68 must be there), plus imagenet/{MAPPING} for synonyms")
_A_SPEC = DatasetSpec(
    "ImageNet-A", "imagenet-a", "https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",
    f"imagenet-a/<wnid>/*.jpg (200 class folders; DC-SFT's 87 must be there), plus imagenet/{MAPPING} for synonyms")


def _shown(wnids: list[str], limit: int = 10) -> str:
    text = ", ".join(f"{w} ({LABELS[w]})" for w in wnids[:limit])
    return text + (f", ... ({len(wnids)} classes)" if len(wnids) > limit else "")


class _DCSFTSplit(ImageNetTask):
    """One of DC-SFT's splits: fixed classes, DC-SFT's labels and prompt."""

    protocol = (f"open: DC-SFT's prompt '{PROMPT}'; parser read_label; metric acc = exact match after "
                "normalisation against DC-SFT's label or a synonym from the mapping")
    #: the classes this split reads and the key of their DC-SFT row counts in EXPECTED
    classes: tuple[str, ...] = ()
    counts: str = ""

    def question(self, sample, conv):
        return PROMPT

    def split_root(self) -> Path:
        return self.dataset.image_dir()

    def labels(self) -> list[str]:
        # the split's own class list, so distractors do not depend on which folders are present
        return sorted(LABELS[w] for w in self.classes)

    def synsets(self, mapping: dict[str, Synset]) -> dict[str, Synset]:
        """DC-SFT's label first, then the mapping's other names (synonyms accepted under strict)."""
        lacking = [w for w in self.classes if w not in mapping]
        if lacking:
            raise DatasetMissing(f"{self.name}: {self.mapping_path()} lacks DC-SFT classes {_shown(lacking)}")
        return {w: Synset(w, tuple(dict.fromkeys((LABELS[w], *mapping[w].names)))) for w in self.classes}

    def read_classes(self) -> tuple[dict[str, Synset], dict[str, list[str]], list[str]]:
        """Synsets, the image files of each class folder (sorted) and the folders present."""
        base = self.dataset.check()
        mapping_path = require_file(self.mapping_path(), self.dataset.name,
                                    f"the ImageNet class mapping (imagenet/{MAPPING}: synonyms come from it)")
        mapping = read_mapping(mapping_path, self.dataset.name)
        synsets = self.synsets(mapping)  # before the folders: a class the mapping lacks is the clearer error
        root = self.split_root() if self.dataset.images else base
        folders = class_folders(root, mapping, mapping_path, self.name)
        present = set(folders)
        missing = [w for w in self.classes if w not in present]
        if missing:
            raise DatasetMissing(f"{self.name}: {root} lacks the class folders of {len(missing)} of DC-SFT's "
                                 f"{len(self.classes)} classes: {_shown(missing)}")
        files: dict[str, list[str]] = {}
        for wnid in self.classes:
            files[wnid] = _images(root / wnid)
            if not files[wnid]:
                raise DatasetMissing(f"{self.name}: {root / wnid} holds no images (.JPEG, .jpg, .jpeg or .png)")
        return synsets, files, folders

    def entry(self, wnid: str, filename: str, synset: Synset, **metadata: Any) -> dict[str, Any]:
        rel = f"{wnid}/{filename}"
        return {"id": rel, "path": rel, "label": synset.label, "synonyms": synset.synonyms,
                "metadata": {"wnid": wnid, **metadata}}

    def base_notes(self, synsets: dict[str, Synset], per_class: dict[str, int]) -> dict[str, Any]:
        expected = EXPECTED.get(self.counts, {})
        differ = {w: {"dcsft": expected[w], "found": n} for w, n in per_class.items() if w in expected
                  and expected[w] != n}
        notes: dict[str, Any] = {
            "source": f"{SOURCE} @ {SOURCE_COMMIT}", "classes": len(self.classes),
            "class_list": [{"wnid": w, "label": synsets[w].label} for w in self.classes],
            "images": sum(per_class.values()), "images_per_class": per_class,
        }
        if expected:
            notes["dcsft_images"] = sum(expected.values())
            notes["counts_match_dcsft"] = not differ
            if differ:
                notes["count_differences"] = differ
        return notes

    def read_index(self) -> list[dict[str, Any]]:
        synsets, files, _ = self.read_classes()
        entries = [self.entry(w, f, synsets[w]) for w in self.classes for f in files[w]]
        notes = self.base_notes(synsets, {w: len(files[w]) for w in self.classes})
        self.extend_notes(notes)
        self._store_notes(notes)
        return entries

    def extend_notes(self, notes: dict[str, Any]) -> None:
        pass


class ImageNet100DCSFTTrain(_DCSFTSplit):
    name = "imagenet100dcsft_train"
    role = "train"
    dataset = IMAGENET_TRAIN
    classes = TRAIN_CLASSES
    description = "DC-SFT's released ImageNet-100 train set: the 10,000 ImageNet-1K train images it lists (100 x 100)"
    id_doc = "the image path relative to imagenet/train, e.g. n04355338/n04355338_11786.JPEG"

    def read_index(self) -> list[dict[str, Any]]:
        synsets, files, _ = self.read_classes()
        listed = train_files()
        entries: list[dict[str, Any]] = []
        absent: list[str] = []
        for wnid in self.classes:
            have = set(files[wnid])
            part = {f: k for k in ("cold_start", "pool") for f in listed[wnid][k]}
            for filename in sorted(part):
                if filename not in have:
                    absent.append(f"{wnid}/{filename}")
                entries.append(self.entry(wnid, filename, synsets[wnid], dcsft_part=part[filename]))
        if absent:
            shown = ", ".join(absent[:5]) + (f", ... ({len(absent)} files)" if len(absent) > 5 else "")
            raise DatasetMissing(f"{self.name}: {self.split_root()} lacks train images DC-SFT lists: {shown}")
        notes = self.base_notes(synsets, {w: len(listed[w]["cold_start"]) + len(listed[w]["pool"])
                                          for w in self.classes})
        notes.update({"train_list": f"{TRAIN_LIST.name} (from data/imagenet_cold_sft.json and "
                                    "data/imagenet_left_grpo.json)",
                      "cold_start_images": sum(e["metadata"]["dcsft_part"] == "cold_start" for e in entries)})
        self._store_notes(notes)
        return entries


class ImageNet100DCSFTVal(_DCSFTSplit):
    name = "imagenet100dcsft_val"
    role = "id"
    dataset = IMAGENET_VAL
    classes = TRAIN_CLASSES
    counts = "val"
    description = "DC-SFT's released ImageNet-100 ID test: every ImageNet-1K val image of its 100 classes"
    id_doc = "the image path relative to imagenet/val, e.g. n04355338/ILSVRC2012_val_00030203.JPEG"


class _DCSFTOOD(_DCSFTSplit):
    role = "ood"
    id_doc = "the image path relative to the dataset directory, e.g. n01855672/art_1.jpg"

    def extend_notes(self, notes: dict[str, Any]) -> None:
        trained = [w for w in self.classes if w in set(TRAIN_CLASSES)]
        notes.update({"training_classes": len(TRAIN_CLASSES), "among_training_classes": len(trained),
                      "outside_training_classes": len(self.classes) - len(trained),
                      "among_training_wnids": trained})


class ImageNetRDCSFT(_DCSFTOOD):
    name = "imagenet_r_dcsft"
    dataset = _R_SPEC
    classes = R_CLASSES
    counts = "r"
    description = ("DC-SFT's ImageNet-R OOD set: every rendition of the 68 ImageNet-R classes with a one-word "
                   "name (16 of them trained on)")


class ImageNetADCSFT(_DCSFTOOD):
    name = "imagenet_a_dcsft"
    dataset = _A_SPEC
    classes = A_CLASSES
    counts = "a"
    description = ("DC-SFT's ImageNet-A OOD set: every adversarial photo of the 87 ImageNet-A classes with a "
                   "one-word name (24 of them trained on)")


for _cls in (ImageNet100DCSFTTrain, ImageNet100DCSFTVal, ImageNetRDCSFT, ImageNetADCSFT):
    TASKS.register(_cls.name, _cls)

SUITES.register("imagenet_dcsft", Suite(
    "imagenet_dcsft", "imagenet100dcsft_train", ("imagenet100dcsft_val",), ("imagenet_r_dcsft", "imagenet_a_dcsft"),
    "DC-SFT's released ImageNet-100 splits (fixed classes; OOD over all single-word R/A classes)"))
