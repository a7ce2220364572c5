"""FineTuneClassifier: frozen backbone, local and hub weights, offline errors, cached features,
gradual unfreezing across a resume. ResNet-18 at 32x32 keeps it fast; VGG16 is built once."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torchvision
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import write_image_tree
from dlzoo.data import ImageFolderDataModule
from dlzoo.models import FineTuneClassifier


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch) -> None:
    """An empty torch hub cache, and no network: any download attempt fails as offline."""
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "cache"))
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(url: str, *args, **kwargs):
        raise urllib.error.URLError(f"offline: {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    yield
    torch.hub.set_dir(str(Path(torch.hub._get_torch_home()) / "hub"))


def _resnet_file(path: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = torchvision.models.resnet18().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def _data(tmp_path: Path, **kwargs) -> ImageFolderDataModule:
    root = write_image_tree(tmp_path / "pets", {"train": 8, "val": 4})
    settings = {"image_size": 32, "resize_size": 36, "batch_size": 4, "num_workers": 0}
    return ImageFolderDataModule(data_dir=str(root), **{**settings, **kwargs})


def _trainer(tmp_path: Path, epochs: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        **kwargs,
    )


def test_vgg16_book_head_and_parameter_counts() -> None:
    model = FineTuneClassifier(backbone="vgg16", weights="IMAGENET1K_V1")  # nothing loaded yet
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (total, trainable) == (135_309_633, 1_049_089)  # the book's counts
    assert trainable == sum(p.numel() for p in model.head.parameters())
    assert [m.out_features for m in model.head if isinstance(m, torch.nn.Linear)] == [256, 1]
    assert model.weights_path().name == "vgg16-397923af.pth"


def test_frozen_backbone_stays_in_eval_mode() -> None:
    model = FineTuneClassifier(backbone="resnet18", weights=None).train()
    assert model.backbone_frozen and not model.backbone.training and model.head.training
    free = FineTuneClassifier(backbone="resnet18", weights=None, freeze_backbone=False).train()
    assert free.backbone.training
    assert all(p.requires_grad for p in free.parameters())


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    state = _resnet_file(tmp_path / "resnet18.pth")
    model = FineTuneClassifier(backbone="resnet18", weights_file=str(tmp_path / "resnet18.pth"))
    model.load_pretrained()
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(
        model.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"]
    )
    # a file of another network is refused with the keys that do not fit
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "other.pth")
    wrong = FineTuneClassifier(backbone="resnet18", weights_file=str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match=r"does not fit torchvision.s resnet18: \d+ missing key"):
        wrong.load_pretrained()
    with pytest.raises(FileNotFoundError, match="weights_file not found"):
        FineTuneClassifier(
            backbone="resnet18", weights_file=str(tmp_path / "no.pth")
        ).load_pretrained()


def test_missing_weights_offline_name_the_file_and_the_hub_cache(tmp_path: Path) -> None:
    model = FineTuneClassifier(backbone="vgg16", weights="IMAGENET1K_V1")
    with pytest.raises(FileNotFoundError) as info:
        model.load_pretrained()
    message = str(info.value)
    hub_file = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert str(hub_file) in message and "offline" in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "weights_file" in message
    with pytest.raises(ValueError, match="has no weights 'IMAGENET9K'"):
        FineTuneClassifier(backbone="vgg16", weights="IMAGENET9K")


@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_fit_from_hub_weights_then_reload_without_them(tmp_path: Path) -> None:
    hub_file = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    state = _resnet_file(hub_file)
    dm = _data(tmp_path)
    pl.seed_everything(0)
    model = FineTuneClassifier(backbone="resnet18", weights="IMAGENET1K_V1", lr=1e-2)
    trainer = _trainer(tmp_path, 2)
    trainer.fit(model, dm)
    torch.testing.assert_close(model.backbone.conv1.weight, state["conv1.weight"])  # frozen
    ckpt = tmp_path / "tuned.ckpt"
    trainer.save_checkpoint(ckpt)
    expected = torch.cat([p["probs"] for p in trainer.predict(model, dm)])
    hub_file.unlink()  # the pretrained file is gone (and downloads fail): reloads must not need it

    restored = FineTuneClassifier.load_from_checkpoint(ckpt, weights_only=True)
    got = torch.cat([p["probs"] for p in _trainer(tmp_path, 1).predict(restored, dm)])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # as `dlzoo predict --ckpt_path` does it: a model built from the config, then the checkpoint
    fresh = FineTuneClassifier(backbone="resnet18", weights="IMAGENET1K_V1", lr=1e-2)
    got = _trainer(tmp_path, 1).predict(fresh, dm, ckpt_path=ckpt, weights_only=True)
    torch.testing.assert_close(torch.cat([p["probs"] for p in got]), expected, rtol=0, atol=0)


def test_cached_features_train_the_same_head(tmp_path: Path) -> None:
    heads, probs = [], []
    for cache in (False, True):
        pl.seed_everything(0)
        dm = _data(tmp_path)
        torch.manual_seed(5)
        model = FineTuneClassifier(
            backbone="resnet18", weights=None, cache_features=cache, head_sizes=(16,), lr=1e-2
        )
        trainer = _trainer(tmp_path, 2)
        trainer.fit(model, dm)
        if cache:
            assert dm._features["train"].tensors[0].shape == (16, 512)
        heads.append(model.head.state_dict())
        probs.append(torch.cat([p["probs"] for p in trainer.predict(model, dm)]))
    for name, value in heads[0].items():
        torch.testing.assert_close(heads[1][name], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(probs[1], probs[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cache_features needs a backbone that stays frozen"):
        FineTuneClassifier(
            backbone="resnet18", weights=None, cache_features=True, unfreeze_at_epoch=1
        )
    augmenting = _data(tmp_path, augment=True)
    model = FineTuneClassifier(backbone="resnet18", weights=None, cache_features=True)
    with pytest.raises(ValueError, match="cached features need augment=False"):
        _trainer(tmp_path, 1).fit(model, augmenting)


def test_gradual_unfreezing_survives_a_resume_after_the_unfreeze_epoch(tmp_path: Path) -> None:
    def build() -> FineTuneClassifier:
        return FineTuneClassifier(backbone="resnet18", weights=None, unfreeze_at_epoch=1, lr=1e-3)

    dm = _data(tmp_path)
    pl.seed_everything(0)
    model = build()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, monitor=None)
    trainer = _trainer(tmp_path, 2, callbacks=[checkpoints], enable_checkpointing=True)
    trainer.fit(model, dm)
    assert not model.backbone_frozen  # unfrozen at epoch 1
    (last,) = (tmp_path / "ckpt").glob("epoch=1*.ckpt")
    before = torch.load(last, weights_only=True)["state_dict"]["network.backbone.conv1.weight"]

    resumed = build()
    seen: list[bool] = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(all(p.requires_grad for p in pl_module.backbone.parameters()))

    trainer = _trainer(tmp_path, 3, callbacks=[Probe()], enable_checkpointing=False)
    trainer.fit(resumed, dm, ckpt_path=last, weights_only=True)
    assert seen and all(seen)  # Lightning 2.6 alone leaves it frozen here (#21901)
    assert not torch.equal(resumed.backbone.conv1.weight.detach(), before)  # it trained
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2  # head, and the backbone added at the unfreeze epoch


# ------------------------------------------------------------------------ timm backbones
TIMM = "timm/test_efficientnet"  # timm's own tiny test network (99k parameters)


def _timm_state(seed: int, name: str = "test_efficientnet") -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name).state_dict()  # with its ImageNet classifier, as files are


def test_timm_backbone_builds_freezes_and_loads_pth_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = FineTuneClassifier(backbone=TIMM, weights="DEFAULT", head_sizes=[8])
    assert model.feature_dim == 256 and model.head[0].in_features == 256
    assert not any(p.requires_grad for p in model.backbone.parameters())  # exactly the backbone
    assert all(p.requires_grad for p in model.head.parameters())
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)

    state = _timm_state(1)
    torch.save(state, tmp_path / "weights.pth")
    save_file({k: v.contiguous() for k, v in _timm_state(2).items()}, tmp_path / "w.safetensors")
    for file, seed in (("weights.pth", 1), ("w.safetensors", 2)):
        loaded = FineTuneClassifier(backbone=TIMM, weights_file=str(tmp_path / file))
        loaded.load_pretrained()
        expected = _timm_state(seed)
        torch.testing.assert_close(loaded.backbone.conv_stem.weight, expected["conv_stem.weight"])
        torch.testing.assert_close(loaded.backbone.bn2.running_var, expected["bn2.running_var"])

    torch.save(_timm_state(3, "test_resnet"), tmp_path / "other.pth")
    wrong = FineTuneClassifier(backbone=TIMM, weights_file=str(tmp_path / "other.pth"))
    with pytest.raises(
        ValueError, match=r"does not fit timm's test_efficientnet: \d+ missing"
    ) as e:
        wrong.load_pretrained()
    assert "missing key(s) ['conv_stem.weight'" in str(e.value) and "unexpected" in str(e.value)
    with pytest.raises(ValueError, match="unknown timm model 'no_such_net'"):
        FineTuneClassifier(backbone="timm/no_such_net")
    with pytest.raises(ValueError, match=r"no pretrained weights 'in22k'.*\['r160_in1k'\]"):
        FineTuneClassifier(backbone=TIMM, weights="in22k")


def test_timm_weights_offline_name_the_file_the_cache_and_weights_file(
    tmp_path: Path, monkeypatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    model = FineTuneClassifier(backbone=TIMM, weights="DEFAULT")
    with pytest.raises(FileNotFoundError) as info:
        model.load_pretrained()
    message = str(info.value)
    assert "https://huggingface.co/timm/test_efficientnet.r160_in1k" in message
    assert "model.safetensors" in message and str(tmp_path / "hf") in message
    assert "--model.init_args.weights_file" in message


def test_images_are_prepared_as_the_backbone_weights_expect(tmp_path: Path) -> None:
    import timm
    from timm.data import create_transform, resolve_data_config
    from torchvision.models import MobileNet_V2_Weights

    dm = _data(tmp_path)
    torchvision_model = FineTuneClassifier(backbone="mobilenet_v2", weights="IMAGENET1K_V1")
    assert torchvision_model.preprocessing_spec == "MobileNet_V2_Weights.IMAGENET1K_V1"
    dm.adopt_preprocessing(torchvision_model.preprocessing_spec)
    preset = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    settings = dm.eval_settings()
    assert settings["resize_size"] == preset.resize_size[0] == 256
    assert settings["crop_size"] == preset.crop_size[0] == 224
    assert settings["mean"] == pytest.approx(preset.mean)
    assert settings["std"] == pytest.approx(preset.std)
    assert dm.input_shape == (3, 224, 224)

    timm_model = FineTuneClassifier(backbone="timm/tf_efficientnet_lite0", weights="DEFAULT")
    assert timm_model.preprocessing_spec == "timm/tf_efficientnet_lite0"
    dm = _data(tmp_path)
    dm.adopt_preprocessing(timm_model.preprocessing_spec)
    config = resolve_data_config({}, model=timm.create_model("tf_efficientnet_lite0"))
    resize, crop, _, normalize = create_transform(**config).transforms
    settings = dm.eval_settings()
    assert settings["resize_size"] == resize.size == 256
    assert settings["crop_size"] == crop.size[0] == 224
    assert settings["interpolation"] == "bicubic" == config["interpolation"]
    assert settings["mean"] == pytest.approx(normalize.mean.tolist())
    assert settings["std"] == pytest.approx(normalize.std.tolist())
    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    assert dm.eval_transform()(image).shape == (3, 224, 224)
    augmenting = _data(tmp_path, augment=True)
    augmenting.adopt_preprocessing(timm_model.preprocessing_spec)
    assert augmenting.train_transform()(image).shape == (3, 224, 224)
    normalize_step = augmenting.train_transform().transforms[-1]
    assert list(normalize_step.mean) == [0.5, 0.5, 0.5]  # the backbone's normalisation

    explicit = _data(tmp_path, preprocessing="ResNet18_Weights.IMAGENET1K_V1")
    explicit.adopt_preprocessing(timm_model.preprocessing_spec)  # an explicit choice wins
    assert explicit.eval_settings()["resize_size"] == 256
    assert explicit.eval_settings()["mean"] == pytest.approx([0.485, 0.456, 0.406])
    random = FineTuneClassifier(backbone=TIMM, weights=None)
    assert random.preprocessing_spec is None  # nothing pretrained: the DataModule's own options
    assert _data(tmp_path).eval_settings()["crop_size"] == 32


def test_backbone_transforms_are_adopted_at_fit_and_survive_a_checkpoint(tmp_path: Path) -> None:
    from dlzoo.cli.checkpoint import restore_checkpoint

    torch.save(_timm_state(1), tmp_path / "weights.pth")

    def build() -> FineTuneClassifier:
        return FineTuneClassifier(
            backbone=TIMM, weights_file=str(tmp_path / "weights.pth"), head_sizes=[8]
        )

    dm = _data(tmp_path)
    trainer = _trainer(tmp_path, 1)
    trainer.fit(build(), dm)
    assert dm.eval_settings()["crop_size"] == 160  # test_efficientnet's pretrained config
    assert dm._datasets["train"][0][0].shape == (3, 160, 160)
    trainer.save_checkpoint(tmp_path / "tuned.ckpt")

    fresh = _data(tmp_path)  # no trainer, no model: only the checkpoint says how
    assert fresh.eval_settings()["crop_size"] == 32
    restore_checkpoint(build(), fresh, tmp_path / "tuned.ckpt")
    assert fresh.eval_settings() == dm.eval_settings()
    assert fresh.state_dict()["preprocessing"] == "timm/test_efficientnet"


def _timm_run(tmp_path: Path, images: dict[str, int], epochs: int, **data: Any) -> Path:
    """A run config (written to ``run.yaml``): the fine-tuner on timm's tiny test network with a
    weights file, on a generated image folder of ``images`` per split."""
    import yaml

    torch.save(_timm_state(1), tmp_path / "weights.pth")
    root = write_image_tree(tmp_path / "pets", images)
    config = {
        "trainer": {"max_epochs": epochs, "accelerator": "cpu", "default_root_dir": str(tmp_path)},
        "model": {
            "class_path": "vgg16_finetune",
            "init_args": {"backbone": TIMM, "weights_file": str(tmp_path / "weights.pth")},
        },
        "data": {"class_path": "image_folder", "init_args": {"data_dir": str(root), **data}},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "run.yaml"


def test_the_command_decides_the_backbone_transforms_before_any_image_is_read(
    tmp_path: Path,
) -> None:
    # issue 26: the run is built in one place (data -> the model's data settings -> model), not
    # by a callback that rebuilds datasets at setup; no callback of the run hands anything over
    from dlzoo.callbacks import AdoptPreprocessing
    from dlzoo.cli.main import make_cli

    config = _timm_run(tmp_path, {"train": 4, "val": 2}, epochs=1, image_size=32, batch_size=4)
    cli = make_cli(["--config", str(config)], run=False)
    assert cli.datamodule._datasets == {}  # nothing read yet
    assert cli.datamodule.eval_settings()["crop_size"] == 160  # test_efficientnet's config
    assert cli.datamodule.state_dict()["preprocessing"] == TIMM
    callbacks = cli.trainer.callbacks + list(cli.model.configure_callbacks())
    assert not any(isinstance(c, AdoptPreprocessing) for c in callbacks)


def test_cache_features_is_the_models_step_and_data_that_cannot_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    # issue 26: callbacks only observe; whether the data can give cached features is settled
    # when the run is built, and cached batches say what they are (no guess from their shape)
    from dlzoo.callbacks import CacheFeatures
    from dlzoo.cli.main import make_cli
    from dlzoo.networks.layers import BackboneFeatures

    config = _timm_run(tmp_path, {"train": 4, "val": 2}, epochs=1, image_size=32, batch_size=4)
    args = ["--config", str(config), "--model.init_args.cache_features", "true"]
    with pytest.raises(ValueError, match="cached features need augment=False"):
        make_cli([*args, "--data.init_args.augment", "true"], run=False)
    cli = make_cli(args, run=False)
    assert cli.datamodule._datasets == {}  # nothing read yet
    callbacks = cli.trainer.callbacks + list(cli.model.configure_callbacks())
    assert not any(isinstance(c, CacheFeatures) for c in callbacks)
    cli.trainer.fit(cli.model, cli.datamodule)
    features, labels = next(iter(cli.datamodule.train_dataloader()))
    assert isinstance(features, BackboneFeatures) and features.values.shape == (4, 256)
    assert labels.shape == (4,)  # the labels of those images, as without the cache
    cli.model.eval()
    with torch.inference_mode():  # the network runs its head on them, its whole self on images
        images = cli.datamodule._datasets["train"][0][0][None]
        whole = cli.model.network(images)
        head = cli.model.network(BackboneFeatures(cli.model.extract_features(images)))
    torch.testing.assert_close(head, whole)


def test_cached_features_give_the_uncached_head_outputs_for_timm(tmp_path: Path) -> None:
    torch.save(_timm_state(1), tmp_path / "weights.pth")
    outputs = []
    for cache in (False, True):
        pl.seed_everything(0)
        dm = _data(tmp_path)
        torch.manual_seed(5)
        model = FineTuneClassifier(
            backbone=TIMM,
            weights_file=str(tmp_path / "weights.pth"),
            cache_features=cache,
            head_sizes=(8,),
            lr=1e-2,
        )
        trainer = _trainer(tmp_path, 2)
        trainer.fit(model, dm)
        if cache:
            assert dm._features["train"].tensors[0].shape == (16, 256)
        outputs.append(torch.cat([p["probs"] for p in trainer.predict(model, dm)]))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_a_fine_tuning_run_prints_no_warning_a_user_cannot_act_on(tmp_path: Path) -> None:
    """`dlzoo fit` on a tiny image folder with a frozen timm backbone, as a subprocess: no eval
    mode warning, no single-class metric warning in the sanity check, no deprecations."""
    import subprocess
    import sys

    config = _timm_run(tmp_path, {"train": 6, "val": 4}, epochs=2, batch_size=2, num_workers=0)
    result = subprocess.run(
        [sys.executable, "-m", "dlzoo", "fit", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONWARNINGS": "default"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for noise in ("Warning", "warn(", "eval mode", "No positive samples", "deprecated"):
        assert noise not in output, output[-3000:]
    assert "images prepared as timm/test_efficientnet was trained" in output


def test_gradual_unfreezing_keeps_the_backbone_fixed_until_the_epoch_and_warns_nothing(
    tmp_path: Path,
) -> None:
    import warnings

    dm = _data(tmp_path)
    pl.seed_everything(0)
    model = FineTuneClassifier(backbone="resnet18", weights=None, unfreeze_at_epoch=1, lr=1e-3)
    stats = model.backbone.bn1.running_mean.clone()
    seen: list[tuple] = []

    class Probe(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            bn = pl_module.backbone.bn1
            seen.append((trainer.current_epoch, bn.training, torch.equal(bn.running_mean, stats)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(tmp_path, 2, callbacks=[Probe()]).fit(model, dm)
    assert seen[0] == (0, False, True)  # frozen epoch: batch norms in eval mode, stats fixed
    assert seen[1][:2] == (1, True) and not seen[1][2]  # unfrozen: the whole backbone trains
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "already exist within another group" in m], messages


def test_cached_features_come_from_onnxruntime_checked_against_torch() -> None:
    from dlzoo.networks.backbones import CheckedExtractor

    torch.manual_seed(0)
    model = FineTuneClassifier(backbone="resnet18", weights=None, cache_features=True).eval()
    images = torch.randn(5, 3, 64, 64)
    extractor = CheckedExtractor(model.backbone, model.extract_features, threads=1)
    with torch.inference_mode():
        first = extractor(images[:3])  # checked against torch
        later = extractor(images[3:])  # ONNX Runtime alone, another batch size
        expected = model.extract_features(images)
    assert extractor.runtime == "onnxruntime" and extractor.session is not None
    torch.testing.assert_close(torch.cat([first, later]), expected, rtol=0, atol=1e-5 * 10)

    def shifted(batch: torch.Tensor) -> torch.Tensor:  # torch disagrees: ONNX Runtime is dropped
        return model.extract_features(batch) + 1.0

    extractor = CheckedExtractor(model.backbone, shifted, threads=1)
    with torch.inference_mode():
        torch.testing.assert_close(extractor(images), shifted(images))
    assert extractor.runtime == "torch" and extractor.session is None
