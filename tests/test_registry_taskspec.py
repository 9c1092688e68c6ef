"""harness.registry and harness.taskspec: names -> tasks, suites, groups, formats, plug-ins."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import harness.registry as registry_mod
from harness.registry import SUITES, TASK_GROUPS, TASKS, Registry
from harness.taskspec import TaskRef, make_task, resolve, split_format

# ----------------------------------------------------------------------------- Registry


@pytest.fixture
def no_entry_points(monkeypatch):
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [])


def test_register_and_get(no_entry_points):
    reg: Registry = Registry("widget", "test.widgets")
    obj = object()
    assert reg.register("a", obj) is obj

    @reg.register("b")
    def b():
        return 1

    assert reg.get("a") is obj and reg.get("b") is b
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"]
    assert "a" in reg and "c" not in reg


def test_register_duplicate(no_entry_points):
    reg: Registry = Registry("widget", "test.widgets")
    obj = object()
    reg.register("a", obj)
    reg.register("a", obj)  # re-registering the same object (re-import) is harmless
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", object())
    assert reg.get("a") is obj


def test_unknown_name_lists_known(no_entry_points):
    reg: Registry = Registry("widget", "test.widgets")
    reg.register("beta", 1)
    reg.register("alpha", 2)
    with pytest.raises(KeyError) as exc:
        reg.get("gamma")
    assert exc.value.args[0] == "unknown widget 'gamma'. Known widgets: alpha, beta"
    empty: Registry = Registry("widget", "test.widgets")
    with pytest.raises(KeyError, match="Known widgets: none"):
        empty.get("x")


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    obj: object = None
    error: Exception | None = None
    loads: int = 0

    def load(self):
        self.loads += 1
        if self.error is not None:
            raise self.error
        return self.obj


def test_entry_points_are_registered(monkeypatch):
    calls = []
    plugin = object()
    eps = [FakeEntryPoint("plug", "pkg.mod:Plug", plugin)]

    def fake_entry_points(group):
        calls.append(group)
        return eps

    monkeypatch.setattr(registry_mod, "entry_points", fake_entry_points)
    reg: Registry = Registry("widget", "test.widgets")
    assert reg.get("plug") is plugin
    assert "plug" in reg.names()
    assert calls == ["test.widgets"]  # loaded once, for this registry's group
    reg.get("plug")
    assert calls == ["test.widgets"] and eps[0].loads == 1


def test_entry_point_does_not_override_builtin(monkeypatch):
    builtin = object()
    ep = FakeEntryPoint("plug", "pkg.mod:Plug", object())
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep])
    reg: Registry = Registry("widget", "test.widgets")
    reg.register("plug", builtin)
    assert reg.get("plug") is builtin
    assert ep.loads == 0


def test_broken_plugin_warns_and_others_still_load(monkeypatch):
    good = object()
    eps = [FakeEntryPoint("broken", "bad.mod:X", error=ImportError("no module named bad")),
           FakeEntryPoint("good", "good.mod:Y", good)]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: eps)
    reg: Registry = Registry("widget", "test.widgets")
    with pytest.warns(UserWarning, match=r"could not load widget plug-in 'broken' \(bad\.mod:X\): no module named bad"):
        names = reg.names()
    assert names == ["good"]
    assert reg.get("good") is good
    with pytest.raises(KeyError, match="unknown widget 'broken'"):
        reg.get("broken")


def test_builtin_modules_are_imported_on_first_use(monkeypatch):
    imported = []
    monkeypatch.setattr(registry_mod.importlib, "import_module", lambda name: imported.append(name))
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [])
    reg: Registry = Registry("widget", "test.widgets", ("some.module",))
    assert imported == []
    reg.names()
    reg.names()
    assert imported == ["some.module"]


def test_global_registries_hold_the_synthetic_suite():
    synth_tasks = [n for n in TASKS.names() if n.startswith("synth_")]
    assert len(synth_tasks) == 17  # 14 of the four families, 3 of the study suite (1,500 per split)
    assert {"synth_cls", "synth_ground", "synth_detect", "synth_count", "synth_cls_study"} <= set(SUITES.names())
    assert TASK_GROUPS.get("synth") == ("synth_cls", "synth_ground", "synth_detect", "synth_count")
    for suite_name in SUITES.names():
        suite = SUITES.get(suite_name)
        for task in (suite.train, *suite.id, *suite.ood):
            assert task in TASKS, (suite_name, task)
        assert TASKS.get(suite.train).role == "train"
        assert all(TASKS.get(t).role == "id" for t in suite.id)
        assert all(TASKS.get(t).role == "ood" for t in suite.ood)


# ----------------------------------------------------------------------------- taskspec


def test_split_format():
    assert split_format("synth_cls_id") == ("synth_cls_id", "open")
    assert split_format(" synth_cls_id:mc ") == ("synth_cls_id", "mc")
    assert split_format("synth_cls_id:yesno") == ("synth_cls_id", "yesno")
    with pytest.raises(ValueError, match="unknown format 'cloze'"):
        split_format("synth_cls_id:cloze")
    with pytest.raises(ValueError, match="unknown format"):
        split_format("synth_cls_id:mc:yesno")


def test_resolve_task():
    assert resolve("synth_cls_id") == [TaskRef("synth_cls_id", "open", "id")]
    assert resolve("synth_cls_style") == [TaskRef("synth_cls_style", "open", "ood")]
    assert resolve("synth_cls_train") == [TaskRef("synth_cls_train", "open", "train")]


def test_resolve_suite_roles():
    assert resolve("synth_cls") == [
        TaskRef("synth_cls_id", "open", "id"),
        TaskRef("synth_cls_style", "open", "ood"),
        TaskRef("synth_cls_clutter", "open", "ood"),
    ]
    assert resolve("synth_detect") == [TaskRef("synth_detect_base", "open", "id"),
                                       TaskRef("synth_detect_novel", "open", "ood")]


def test_resolve_group():
    refs = resolve("synth")
    names = [r.name for r in refs]
    assert len(refs) == 10 and len(set(names)) == 10
    assert names[:3] == ["synth_cls_id", "synth_cls_style", "synth_cls_clutter"]
    assert not any(n.endswith("_train") for n in names)  # a group means eval splits only
    assert {r.role for r in refs} == {"id", "ood"}
    assert sum(r.role == "id" for r in refs) == 4


def test_resolve_format_suffix():
    refs = resolve("synth_count:mc")
    assert refs == [TaskRef("synth_count_id", "mc", "id"), TaskRef("synth_count_arith", "mc", "ood")]
    assert [r.full_name for r in refs] == ["synth_count_id:mc", "synth_count_arith:mc"]
    assert TaskRef("x", "open", "id").full_name == "x"
    assert {r.fmt for r in resolve("synth:yesno")} == {"yesno"}


def test_resolve_list_and_string_agree():
    assert resolve("synth_cls_id, synth_count_id") == resolve(["synth_cls_id", "synth_count_id"])
    assert [r.name for r in resolve("synth_cls_id,,synth_count_id,")] == ["synth_cls_id", "synth_count_id"]


def test_resolve_deduplicates_keeping_first():
    refs = resolve("synth_cls_id,synth_cls,synth_cls_id")
    assert [r.full_name for r in refs] == ["synth_cls_id", "synth_cls_style", "synth_cls_clutter"]
    # the same task in two formats is two tasks
    refs = resolve("synth_cls_id,synth_cls_id:mc,synth_cls_id:mc")
    assert [r.full_name for r in refs] == ["synth_cls_id", "synth_cls_id:mc"]
    assert len(resolve("synth,synth_cls,synth_ground_id")) == 10


def test_resolve_unknown_name():
    with pytest.raises(KeyError) as exc:
        resolve("synth_cls_id,not_a_task")
    msg = exc.value.args[0]
    assert "unknown task, suite or group 'not_a_task'" in msg
    assert "synth_cls_id" in msg and "synth_cls" in msg and "synth" in msg


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_resolve_nothing(spec):
    with pytest.raises(ValueError, match="no tasks given"):
        resolve(spec)


def test_resolve_bad_format():
    with pytest.raises(ValueError, match="'synth_cls:bogus': unknown format 'bogus'"):
        resolve("synth_cls:bogus")


def test_make_task():
    task = make_task("synth_ground_id", "mc")
    assert task.full_name == "synth_ground_id:mc" and task.fmt == "mc" and task.metrics == ("acc",)
    assert make_task("synth_ground_id").metrics == ("acc@0.5", "acc@0.75", "acc@0.9", "miou")
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        make_task("nope")
    with pytest.raises(ValueError, match="unknown format"):
        make_task("synth_ground_id", "cloze")
