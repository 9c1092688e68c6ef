"""Tiny ImageNet-1K, ImageNet-R, ImageNet-A and Pascal VOC 2007 trees in their upstream layouts.

Each writer takes a data root, writes its dataset under the directory its task reads
(``imagenet/``, ``imagenet-r/``, ``imagenet-a/``, ``VOCdevkit/VOC2007/``) and returns
what it wrote, so tests can assert exact ids, labels and sizes.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# 8 classes; 5 have a single-word first name (tench, goldfish, hammerhead, stingray, cock),
# three do not: a space ("great white shark", "electric ray") or a hyphen ("Shih-Tzu")
MAPPING = {
    "n01440764": ["tench", "Tinca tinca"],
    "n01443537": ["goldfish", "Carassius auratus"],
    "n01484850": ["great white shark", "white shark", "man-eater", "man-eating shark", "Carcharodon carcharias"],
    "n01494475": ["hammerhead", "hammerhead shark"],
    "n01496331": ["electric ray", "crampfish", "numbfish", "torpedo"],
    "n01498041": ["stingray"],
    "n01514668": ["cock"],
    "n02086240": ["Shih-Tzu"],
}
SINGLE_WORD = ["n01440764", "n01443537", "n01494475", "n01498041", "n01514668"]

# ImageNet-R and -A each overlap the single-word classes in two classes
R_CLASSES = ["n01440764", "n01484850", "n01494475", "n02086240"]  # overlap: tench, hammerhead
A_CLASSES = ["n01443537", "n01496331", "n01498041"]  # overlap: goldfish, stingray


def _image(path: Path, size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (200, 40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", size, colour).save(path, fmt)


def mapping_text(mapping: dict[str, list[str]] = MAPPING) -> str:
    return "".join(f"{wnid} {', '.join(names)}\n" for wnid, names in mapping.items())


def write_imagenet(root: Path, train_per_class: int = 3, val_per_class: int = 2) -> dict:
    """``root/imagenet``: the mapping, ``train/<wnid>/<wnid>_<n>.JPEG``, ``val/<wnid>/ILSVRC2012_val_<n>.JPEG``.

    Returns ``{"mapping", "train": {wnid: [ids]}, "val": {wnid: [ids]}}`` with ids sorted as the loader orders them.
    """
    base = Path(root) / "imagenet"
    base.mkdir(parents=True, exist_ok=True)
    (base / "LOC_synset_mapping.txt").write_text(mapping_text())
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    counter = 0
    for c, wnid in enumerate(MAPPING):
        train[wnid] = []
        for k in range(train_per_class):
            name = f"{wnid}_{1000 + 37 * k}.JPEG"
            _image(base / "train" / wnid / name, colour=(30 * c, 10 * k, 100))
            train[wnid].append(f"{wnid}/{name}")
        val[wnid] = []
        for _ in range(val_per_class):
            counter += 1
            # upstream val numbers are scattered over the classes, so within a class they are not consecutive
            name = f"ILSVRC2012_val_{counter * 293 % 50000:08d}.JPEG"
            _image(base / "val" / wnid / name, colour=(30 * c, 200, 0))
            val[wnid].append(f"{wnid}/{name}")
        train[wnid].sort()
        val[wnid].sort()
    return {"mapping": MAPPING, "train": train, "val": val}


def _write_ood(base: Path, classes: list[str], names: list[str], readme: str) -> dict[str, list[str]]:
    base.mkdir(parents=True, exist_ok=True)
    (base / "README.txt").write_text(readme)
    out: dict[str, list[str]] = {}
    for c, wnid in enumerate(classes):
        out[wnid] = []
        for k, name in enumerate(names):
            _image(base / wnid / name, colour=(40 * c, 40 * k, 250))
            out[wnid].append(f"{wnid}/{name}")
        out[wnid].sort()
    return out


def write_imagenet_r(root: Path) -> dict[str, list[str]]:
    """``root/imagenet-r/<wnid>/<rendition>_<n>.jpg`` plus README.txt; returns {wnid: [ids]}."""
    return _write_ood(Path(root) / "imagenet-r", R_CLASSES, ["sketch_3.jpg", "art_0.jpg"],
                      "ImageNet-R: renditions of 200 ImageNet classes\n")


def write_imagenet_a(root: Path) -> dict[str, list[str]]:
    """``root/imagenet-a/<wnid>/<score>_<class> _ <class>_<score>.jpg`` plus README.txt; returns {wnid: [ids]}."""
    return _write_ood(Path(root) / "imagenet-a", A_CLASSES,
                      ["0.000116_digital clock _ digital clock_0.865662.jpg", "0.001262_goldfish _ goldfish_0.74.jpg"],
                      "n01498041 stingray\nn01531178 goldfinch\n")


# ----- Pascal VOC 2007 ----------------------------------------------------------------------

VOC_IMAGES = {
    # id: (width, height, [(name, difficult)])
    "000001": (32, 24, [("dog", 0), ("person", 0), ("person", 0)]),
    "000002": (24, 32, [("train", 0)]),
    "000004": (32, 24, [("diningtable", 0), ("pottedplant", 0), ("tvmonitor", 1), ("chair", 1), ("chair", 0)]),
}
VOC_LABELS = {
    "000001": ["dog", "person"],
    "000002": ["train"],
    "000004": ["chair", "dining table", "potted plant", "tv monitor"],
}
VOC_NOT_IN_TEST = "000003"  # annotated (trainval) but not in test.txt


def voc_xml(image_id: str, width: int, height: int, objects: list[tuple[str, int]]) -> str:
    """An annotation as VOC 2007 writes it (tab-indented, with source, owner, pose and boxes)."""
    objs = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{1 + i}</xmin>\n\t\t\t<ymin>2</ymin>\n"
        f"\t\t\t<xmax>{width - 1}</xmax>\n\t\t\t<ymax>{height - 1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for i, (name, difficult) in enumerate(objects))
    return (f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n\t<source>\n"
            "\t\t<database>The VOC2007 Database</database>\n\t\t<annotation>PASCAL VOC2007</annotation>\n"
            "\t\t<image>flickr</image>\n\t\t<flickrid>341012865</flickrid>\n\t</source>\n"
            "\t<owner>\n\t\t<flickrid>Fried Camels</flickrid>\n\t\t<name>Jinky the Fruit Bat</name>\n\t</owner>\n"
            f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objs}</annotation>\n")


def write_voc(root: Path) -> dict:
    """``root/VOCdevkit/VOC2007``: Annotations, JPEGImages, ImageSets/Main/test.txt (3 test images)."""
    base = Path(root) / "VOCdevkit" / "VOC2007"
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_id, (w, h, objects) in {**VOC_IMAGES, VOC_NOT_IN_TEST: (16, 16, [("cat", 0)])}.items():
        (base / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, w, h, objects))
        _image(base / "JPEGImages" / f"{image_id}.jpg", size=(w, h))
    (base / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in VOC_IMAGES))
    return {"ids": list(VOC_IMAGES), "labels": VOC_LABELS,
            "sizes": {i: [w, h] for i, (w, h, _) in VOC_IMAGES.items()}, "base": base}
