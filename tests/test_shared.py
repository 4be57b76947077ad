"""Where the shared inputs are looked for: one function (ugicm_codec.shared), used by evaluation,
training and the maintainer scripts alike."""

from __future__ import annotations

from pathlib import Path

from ugicm_codec import shared
from ugicm_codec.training.config import TrainConfig


def test_the_environment_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("UGICM_SHARED", str(tmp_path / "elsewhere"))
    assert shared.shared_dir() == tmp_path / "elsewhere"  # as given, even when it does not exist
    assert shared.shared_path("data", "kodak") == tmp_path / "elsewhere" / "data" / "kodak"


def test_then_the_folder_beside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("UGICM_SHARED", raising=False)
    (tmp_path / "shared").mkdir()
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    assert shared.shared_dir() == tmp_path / "shared"


def test_then_the_folder_beside_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("UGICM_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared here
    repository = Path(shared.__file__).resolve().parents[1]
    assert shared.shared_dir() == repository.parent / "shared"


def test_configured_paths_in_the_shared_spelling_follow_it(tmp_path, monkeypatch):
    monkeypatch.setenv("UGICM_SHARED", str(tmp_path))
    assert shared.resolve("../shared/data/train") == str(tmp_path / "data" / "train")
    assert shared.resolve("../shared") == str(tmp_path)
    assert shared.resolve("../sharedx/a") == "../sharedx/a" and shared.resolve("/data/train") == "/data/train"
    config = TrainConfig()  # the defaults, as configs/*.toml write them
    assert config.train == [str(tmp_path / "data" / "train")] and config.val == str(tmp_path / "data" / "val")
    assert TrainConfig(train=["/my/images"], val="").train == ["/my/images"]
