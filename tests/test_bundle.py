"""Sealed export bundles (issue 18, defect 5): every tampering is refused by ``load_bundle``,
export never deletes a file it did not write, and bundles get normal permissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import make_frame
from dlzoo.data import TabularDataModule
from dlzoo.deploy.bundle import BUNDLE_FILE, BundleError, load_bundle, read_bundle, seal
from dlzoo.deploy.export import ExportError, export_model
from dlzoo.deploy.serve import PredictionAPI, _Raw
from dlzoo.models import FeedForwardNet


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("bundle")
    make_frame(n=120).to_csv(root / "rows.csv", index=False)
    dm = TabularDataModule(filename=str(root / "rows.csv"), target="target")
    torch.manual_seed(0)
    return FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]).eval(), dm


@pytest.fixture(scope="module")
def exported(trained: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, dm = trained
    return export_model(model, dm, tmp_path_factory.mktemp("export") / "bundle").parent


@pytest.fixture
def bundle(exported: Path, tmp_path: Path) -> Path:
    """A fresh copy of one exported bundle, for each test to tamper with."""
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


def _edit_json(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / BUNDLE_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _scale_mean(data: dict) -> None:
    data["preprocessor"]["init_args"]["state"]["mean"][0] += 1.0


def _swap_classes(data: dict) -> None:
    data["classes"].reverse()


def _empty_file_list(data: dict) -> None:
    data["files"] = {}


def _model_outside(data: dict) -> None:
    data["model_file"] = "../model.onnx"
    data["files"]["../model.onnx"] = data["files"].pop("model.onnx")


TAMPERING = {
    "scaler mean edited": (_scale_mean, "was changed after export"),
    "class names swapped": (_swap_classes, "was changed after export"),
    "file list emptied": (_empty_file_list, "was changed after export"),
    "model file outside the folder": (_model_outside, "was changed after export"),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_an_edited_bundle_json_is_refused(bundle: Path, case: str) -> None:
    change, words = TAMPERING[case]
    _edit_json(bundle, change)
    with pytest.raises(BundleError, match=words):
        load_bundle(bundle)


def _downgraded(data: dict) -> None:
    # issue 29, defect 2: "version 1" used to switch the seal off
    data["bundle_version"] = 1
    del data["sha256"]
    data["preprocessor"]["init_args"]["state"]["mean"][0] += 1.0


def test_a_bundle_downgraded_to_version_1_to_skip_the_seal_is_refused(
    bundle: Path, trained: tuple
) -> None:
    _edit_json(bundle, _downgraded)
    with pytest.raises(BundleError, match=r"bundle_version 1 .* version 1 bundles had none"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="bundle_version 1"):
        PredictionAPI.for_bundle(bundle, threads=1)


@pytest.mark.parametrize("version", ["2", 2.0, None, True, 99])
def test_a_bundle_version_that_is_not_a_known_whole_number_is_one_error(
    bundle: Path, version: object
) -> None:
    _edit_json(bundle, lambda data: data.update(bundle_version=version))
    with pytest.raises(BundleError, match="bundle_version"):
        load_bundle(bundle)


def test_an_unlisted_file_is_refused_whatever_the_version_says(bundle: Path) -> None:
    _edit_json(bundle, lambda data: (data.update(bundle_version=1), data.pop("sha256")))
    _edit_json(bundle, lambda data: data.pop("preprocessor"))
    (bundle / "vocab.json").write_text("{}")
    with pytest.raises(
        BundleError, match=r"holds files the bundle does not list: \['vocab.json'\]"
    ):
        load_bundle(bundle)


def test_a_resealed_json_naming_a_path_outside_is_refused(bundle: Path) -> None:
    # even a JSON whose digest was recomputed may not point outside its folder
    outside = bundle.parent / "model.onnx"
    outside.write_bytes((bundle / "model.onnx").read_bytes())

    def move(data: dict) -> None:
        _model_outside(data)
        data.update(seal({k: v for k, v in data.items() if k != "sha256"}))

    _edit_json(bundle, move)
    with pytest.raises(BundleError, match="not a file of the bundle folder"):
        load_bundle(bundle)


def test_a_symlinked_model_file_pointing_outside_is_refused(bundle: Path) -> None:
    outside = bundle.parent / "elsewhere.onnx"
    (bundle / "model.onnx").rename(outside)
    (bundle / "model.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="points outside"):
        load_bundle(bundle)


def test_changed_missing_or_extra_files_are_refused(bundle: Path) -> None:
    (bundle / "notes.txt").write_text("added later")
    with pytest.raises(BundleError, match=r"holds files the bundle does not list: \['notes.txt'\]"):
        read_bundle(bundle)
    (bundle / "notes.txt").unlink()
    model = bundle / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="does not match the sha256"):
        read_bundle(bundle)
    model.unlink()
    with pytest.raises(BundleError, match="is missing from the bundle"):
        read_bundle(bundle)


def test_a_folder_without_a_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"has no dlzoo-bundle\.json"):
        read_bundle(tmp_path)


def test_an_untouched_bundle_loads_and_serves(bundle: Path, trained: tuple) -> None:
    data, _ = load_bundle(bundle)
    assert data["bundle_version"] == 2 and len(data["sha256"]) == 64
    api = PredictionAPI.for_bundle(bundle, threads=1)
    rows = make_frame(n=3, seed=7).drop(columns="target").to_dict("records")
    (answer,) = api.predict([_Raw(rows)])
    assert [set(r) for r in answer] == [{"label", "probabilities"}] * 3


def test_export_never_deletes_a_file_it_did_not_write(trained: tuple, bundle: Path) -> None:
    model, dm = trained
    mine = bundle / "my-notes.txt"
    mine.write_text("keep me")
    with pytest.raises(ExportError, match=r"holds files the bundle did not write.*my-notes\.txt"):
        export_model(model, dm, bundle)
    assert mine.read_text() == "keep me" and (bundle / "model.onnx").is_file()
    mine.unlink()
    export_model(model, dm, bundle)  # its own files only: replaced
    assert sorted(p.name for p in bundle.iterdir()) == [BUNDLE_FILE, "model.onnx"]


def test_bundle_files_and_folder_get_normal_permissions(exported: Path) -> None:
    # defect 6: bundle folders were created 0700
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(exported.stat().st_mode) == 0o777 & ~umask
    for file in exported.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask


SERVE_A_BUNDLE = """
import json, sys
from dlzoo.deploy.serve import PredictionAPI, _Raw
api = PredictionAPI.for_bundle(sys.argv[1], threads=1)
api.setup("cpu")
(answer,) = api.predict([_Raw(json.loads(sys.argv[2]))])
loaded = {name.split(".")[0] for name in sys.modules}
heavy = sorted(loaded & {"lightning", "pytorch_lightning", "torchmetrics", "torchvision"})
print(json.dumps({"heavy": heavy, "class": type(api.preprocessor).__module__, "answer": answer}))
"""


@pytest.mark.parametrize("class_path", ["as exported", "dlzoo.data.tabular.TabularPreprocessor"])
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_a_bundle_is_served_without_lightning_or_torchmetrics(
    bundle: Path, class_path: str
) -> None:
    # the start-up goal of issue 18: importing Lightning and torchmetrics took ~6 s of the 10
    if class_path != "as exported":  # bundles written before the preprocessors moved

        def rename(data: dict) -> None:
            data["preprocessor"]["class"] = class_path
            data.update(seal({k: v for k, v in data.items() if k != "sha256"}))

        _edit_json(bundle, rename)
    rows = make_frame(n=3, seed=7).drop(columns="target").to_dict("records")
    (expected,) = PredictionAPI.for_bundle(bundle, threads=1).predict([_Raw(rows)])
    run = subprocess.run(
        [sys.executable, "-c", SERVE_A_BUNDLE, str(bundle), json.dumps(rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(run.stdout.splitlines()[-1])
    assert got["heavy"] == [] and got["class"] == "dlzoo.data.preprocess.tabular"
    assert got["answer"] == json.loads(json.dumps(expected))


@pytest.mark.parametrize("class_path", ["dlzoo.sweep.SweepError", "os.system", ""])
def test_a_bundle_naming_no_dlzoo_preprocessor_is_refused(bundle: Path, class_path: str) -> None:
    def rename(data: dict) -> None:
        data["preprocessor"]["class"] = class_path
        data.update(seal({k: v for k, v in data.items() if k != "sha256"}))

    _edit_json(bundle, rename)
    with pytest.raises(BundleError, match="no dlzoo preprocessor"):
        PredictionAPI.for_bundle(bundle, threads=1)


def test_a_network_with_nan_weights_exports_nothing_and_says_so(
    trained: tuple, tmp_path: Path
) -> None:
    # issue 29, defect 8: NaN weights exported with "parity 0.0e+00" and served null answers
    model, dm = trained
    broken = FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.network.net[0].weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match=r"non-finite outputs \(NaN or inf\)"):
        export_model(broken, dm, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "argument"),
    [("TextPreprocessor", "vocabulary_file"), ("SubwordPreprocessor", "tokenizer_file")],
)
def test_a_text_preprocessors_file_outside_its_bundle_is_refused(
    tmp_path: Path, name: str, argument: str
) -> None:
    # a resealed bundle.json could name a file anywhere: the preprocessor reads only its folder
    from dlzoo.data import preprocess

    outside = tmp_path / "outside.json"
    outside.write_text("[]")
    (tmp_path / "bundle").mkdir()
    with pytest.raises(ValueError, match=f"the {argument.replace('_', ' ')} '../outside.json' is"):
        getattr(preprocess, name).from_bundle(
            {argument: "../outside.json", "max_length": 8}, tmp_path / "bundle"
        )
