"""Pascal VOC 2007 test as multi-label classification: Curr-ReFT's classification OOD split.

Each image of ``ImageSets/Main/test.txt`` is one sample; its labels are the distinct
``<object><name>`` values of ``Annotations/<id>.xml``, difficult objects included (an
object VOC marks difficult is still in the picture; the ones that are only difficult are
listed in the sample's metadata), written as readable names (``pottedplant`` -> "potted
plant", see :data:`READABLE`). The image size comes from the annotation's ``<size>``.

The XML is read with the standard library: ElementTree resolves no external entities,
and the expat it runs on (2.4.1 and later) refuses entity-expansion bombs, so defusedxml
would add a dependency for no protection these files need.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.data import DatasetMissing, DatasetSpec, require_file
from harness.dataset_task import _INDEX_CACHE
from harness.registry import TASKS
from tasks.classification.multilabel import MultiLabelClassificationTask

# VOC's class names that run words together, as a person would write them
READABLE = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}

VOC2007 = DatasetSpec(
    "Pascal VOC 2007", "VOCdevkit/VOC2007",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/ (VOCtest_06-Nov-2007.tar)",
    "VOCdevkit/VOC2007/ImageSets/Main/test.txt (one image id per line), VOCdevkit/VOC2007/Annotations/<id>.xml, "
    "VOCdevkit/VOC2007/JPEGImages/<id>.jpg",
    required=("ImageSets/Main/test.txt", "Annotations"), images="JPEGImages")


def readable(name: str) -> str:
    return READABLE.get(name, name)


def _dimension(size: ET.Element, tag: str, path: Path) -> int:
    text = (size.findtext(tag) or "").strip()
    try:
        value = float(text)  # a few VOC-format tools write "500.0"
    except ValueError:
        raise DatasetMissing(f"{VOC2007.name}: {path}: <size><{tag}> is {text!r}, not a number") from None
    if value <= 0 or value != int(value):
        raise DatasetMissing(f"{VOC2007.name}: {path}: <size><{tag}> is {text!r}, not a positive whole number")
    return int(value)


def read_annotation(path: Path) -> dict[str, Any]:
    """One VOC annotation file: image size, distinct readable labels, labels only marked difficult."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetMissing(f"{VOC2007.name}: {path} is not well-formed XML ({exc})") from None
    except OSError as exc:
        raise DatasetMissing(f"{VOC2007.name}: cannot read {path} ({exc.strerror})") from None
    if root.tag != "annotation":
        raise DatasetMissing(f"{VOC2007.name}: {path}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    if size is None or size.find("width") is None or size.find("height") is None:
        raise DatasetMissing(f"{VOC2007.name}: {path} has no <size> with <width> and <height>")
    width, height = _dimension(size, "width", path), _dimension(size, "height", path)
    objects = root.findall("object")
    if not objects:
        raise DatasetMissing(f"{VOC2007.name}: {path} has no <object>")
    plain: set[str] = set()
    difficult: set[str] = set()
    for number, obj in enumerate(objects, 1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetMissing(f"{VOC2007.name}: {path}: <object> {number} has no <name>")
        (difficult if (obj.findtext("difficult") or "0").strip() == "1" else plain).add(readable(name))
    return {"size": [width, height], "labels": sorted(plain | difficult),
            "difficult_only": sorted(difficult - plain), "n_objects": len(objects)}


def read_ids(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DatasetMissing(f"{VOC2007.name}: {path} is not a text file of image ids") from None
    ids = [line.strip() for line in lines if line.strip()]
    bad = next((i for i in ids if any(ch.isspace() or ch in "/\\" for ch in i)), None)
    if bad is not None:
        raise DatasetMissing(f"{VOC2007.name}: {path}: {bad!r} is not an image id (one id like 000001 per line)")
    if not ids:
        raise DatasetMissing(f"{VOC2007.name}: {path} lists no image ids")
    return ids


class VocCls(MultiLabelClassificationTask):
    name = "voc_cls"
    role = "ood"
    dataset = VOC2007
    description = "Pascal VOC 2007 test: name every object category in the image (Curr-ReFT's classification OOD)"
    id_doc = "the VOC image id, e.g. 000001 (ImageSets/Main/test.txt)"

    def read_index(self) -> list[dict[str, Any]]:
        base = self.dataset.check()
        entries = []
        for image_id in read_ids(base / "ImageSets/Main/test.txt"):
            xml = require_file(base / "Annotations" / f"{image_id}.xml", self.dataset.name, f"the annotation of {image_id}")
            ann = read_annotation(xml)
            metadata: dict[str, Any] = {"n_objects": ann["n_objects"]}
            if ann["difficult_only"]:
                metadata["difficult_only"] = ann["difficult_only"]
            entries.append({"id": image_id, "path": f"{image_id}.jpg", "size": ann["size"], "labels": ann["labels"],
                            "metadata": metadata})
        _INDEX_CACHE[("notes",) + self.cache_key()] = {  # type: ignore[assignment]
            "images": len(entries), "difficult_objects": "counted as labels",
            "images_with_difficult_only_labels": sum("difficult_only" in e["metadata"] for e in entries),
            "readable_names": READABLE}
        return entries

    def notes(self) -> dict[str, Any]:
        key = ("notes",) + self.cache_key()
        if key not in _INDEX_CACHE:
            self.read_index()
        return dict(_INDEX_CACHE[key])  # type: ignore[arg-type]


TASKS.register(VocCls.name, VocCls)
