"""harness/hub.py: a hub id (org/name) resolves from the local hub cache without a network,
and gives one-line errors when downloads are off or the hub cannot be reached. (The download
itself is huggingface_hub's: there is no network here to test it against.)"""

from __future__ import annotations

import shutil
import socket

import pytest

from harness import hub
from harness.errors import UsageError

REPO = "some-org/tiny-vl"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with block ends: connections are refused


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache of the test's own (huggingface_hub reads the constant at call time)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_cache(cache, repo, source):
    """A snapshot laid out as huggingface_hub writes one: refs/main names the commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    shutil.copytree(source, folder / "snapshots" / commit)
    return folder / "snapshots" / commit


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed, towards a hub endpoint that refuses connections."""
    import huggingface_hub.constants as constants

    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    return endpoint


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    assert hub.is_hub_id("Qwen/Qwen2-VL-2B-Instruct") and hub.is_hub_id("org/name.v1_x-2")
    for path in ("/abs/model", "./rel/model", "~/model", "a/b/c", "tiny", "org/", "/org"):
        assert not hub.is_hub_id(path), path
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "m").mkdir()
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert not hub.is_hub_id("org/m")  # an existing relative directory is a path
    finally:
        os.chdir(cwd)


def test_a_cached_hub_model_loads_without_a_network(tiny_model_dir, hub_cache, online):
    from harness.backends.hf import resolve_model_and_adapters

    snapshot = put_in_cache(hub_cache, REPO, tiny_model_dir)
    base, found, adapters = resolve_model_and_adapters(REPO, None)
    assert (base, found, adapters) == (REPO, snapshot, [])


def test_downloads_off_is_one_clear_error(hub_cache, monkeypatch):
    from harness.backends.hf import resolve_model_and_adapters

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match=r"not in the local Hugging Face cache and downloads are off.*hf download"):
        resolve_model_and_adapters(REPO, None)


def test_an_unreachable_hub_is_one_clear_error(hub_cache, online):
    with pytest.raises(UsageError, match=rf"could not be downloaded from {online}.*without a network") as info:
        hub.fetch(REPO)
    assert "\n" not in str(info.value)


def test_the_eval_command_says_so_in_one_line(hub_cache, online, tmp_path, capsys):
    from harness.cli import main

    code = main(["eval", "--model", REPO, "--tasks", "synth_cls_id", "--limit", "2",
                 "--output_path", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "could not be downloaded" in err and len(err.strip().splitlines()) == 1


def test_trainers_take_a_cached_hub_id_too(tiny_model_dir, hub_cache, monkeypatch):
    from trainers.trl_run import check_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = put_in_cache(hub_cache, REPO, tiny_model_dir)
    assert check_model_dir(REPO) == snapshot.resolve()
    with pytest.raises(UsageError, match="downloads are off"):
        check_model_dir("some-org/not-cached")
