"""Pretrained backbones: torchvision and timm networks without their classifier, their weights,
and the evaluation preprocessing each set of weights was trained with (timm's ``pretrained_cfg``
idea: what data must look like travels with the weights). The fine-tuner builds on these; an image
DataModule is handed a spec name and resolves it here, never reading the model.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlzoo.onnx_io import ExportedModel, batch_axes, write_onnx

log = logging.getLogger(__name__)


def split_last_linear(network: nn.Module) -> tuple[str, nn.Linear]:
    name, last = None, None
    for module_name, module in network.named_modules():
        if isinstance(module, nn.Linear):
            name, last = module_name, module
    if last is None:
        raise ValueError(f"{type(network).__name__} has no Linear layer to replace with a head")
    return name, last


#: how a timm backbone is named: ``timm/tf_efficientnet_lite0``
TIMM_PREFIX = "timm/"


def timm_name(backbone: str, weights: str | None) -> str:
    """``<architecture>[.<pretrained tag>]`` for timm; ``weights`` is DEFAULT, a tag or None."""
    name = backbone.removeprefix(TIMM_PREFIX)
    return name if weights in (None, "DEFAULT") or "." in name else f"{name}.{weights}"


def timm_pretrained_cfg(name: str) -> Any:
    """timm's pretrained config of ``<architecture>[.<tag>]``, or ``None`` if it has none."""
    import timm

    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # "Invalid pretrained tag"
        return None


def timm_backbone(backbone: str, weights: str | None) -> tuple[nn.Module, str, int]:
    """A timm network without its classifier (pooled features out), the classifier's name in
    its state dicts, and the feature width."""
    import timm

    name = timm_name(backbone, weights)
    architecture = name.split(".", 1)[0]
    if architecture not in timm.list_models():
        raise ValueError(
            f"unknown timm model {architecture!r} (backbone {backbone!r}); see "
            "timm.list_models(), e.g. timm/tf_efficientnet_lite0, timm/resnet18"
        )
    if weights is not None and timm_pretrained_cfg(name) is None:
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{architecture}.*")]
        raise ValueError(
            f"timm has no pretrained weights {weights!r} for {architecture}; weights is DEFAULT, "
            f"one of the tags {tags}, or null"
        )
    network = timm.create_model(name, pretrained=False, num_classes=0)  # no I/O here
    return network, network.pretrained_cfg.get("classifier", "classifier"), network.num_features


def timm_hub_state(backbone: str, weights: str | None) -> dict[str, torch.Tensor]:
    """timm's pretrained weights from its Hugging Face hub cache (downloaded when online)."""
    import timm
    from huggingface_hub import constants

    name = timm_name(backbone, weights)
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as err:  # offline: LocalEntryNotFoundError, OSError, timeouts ...
        hub_id = getattr(timm_pretrained_cfg(name), "hf_hub_id", None) or name
        raise FileNotFoundError(
            f"timm weights of {name} are not in the Hugging Face hub cache "
            f"({constants.HF_HUB_CACHE}) and could not be downloaded ({type(err).__name__}). "
            f"On an offline machine, download model.safetensors from "
            f"https://huggingface.co/{hub_id} elsewhere and pass it as "
            "--model.init_args.weights_file /path/to/model.safetensors (a .pth/.bin state dict "
            "works too), or copy the hub cache folder, or weights: null for random weights."
        ) from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file (no unpickling at all) or a ``.pth``/``.pt``/
    ``.bin`` file (``torch.load(weights_only=True)``; a ``state_dict``/``model`` entry is
    unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def pretrained_eval_settings(spec: str) -> dict[str, Any]:
    """The evaluation transforms pretrained weights were trained with, as numbers: ``spec`` is a
    torchvision weights entry (``MobileNet_V2_Weights.IMAGENET1K_V1``) or a timm model
    (``timm/tf_efficientnet_lite0``, optionally ``.<tag>``). Center crops only."""
    if spec.startswith("timm/"):
        import timm
        from timm.data import resolve_data_config

        try:
            cfg = timm.models.get_pretrained_cfg(spec.removeprefix("timm/"))
        except RuntimeError:  # an unknown pretrained tag
            cfg = None
        if cfg is None:
            raise ValueError(
                f"unknown timm model {spec!r} for preprocessing; e.g. timm/tf_efficientnet_lite0 "
                "(timm.list_pretrained())"
            )
        config = resolve_data_config(pretrained_cfg=cfg.to_dict())
        if config.get("crop_mode", "center") != "center":
            raise ValueError(f"{spec} crops with {config['crop_mode']!r}; dlzoo does center crops")
        crop = int(config["input_size"][-1])
        return {
            "resize_size": math.floor(crop / config["crop_pct"]),  # as timm's eval transform
            "crop_size": crop,
            "interpolation": config["interpolation"],
            "mean": [float(m) for m in config["mean"]],
            "std": [float(s) for s in config["std"]],
        }
    from torchvision.models import get_weight

    try:
        preset = get_weight(spec).transforms()
    except (ValueError, KeyError, AttributeError):
        raise ValueError(
            f"unknown pretrained weights {spec!r} for preprocessing; e.g. "
            "VGG16_Weights.IMAGENET1K_V1, ResNet18_Weights.IMAGENET1K_V1 (torchvision) or "
            "timm/tf_efficientnet_lite0"
        ) from None
    return {
        "resize_size": int(preset.resize_size[0]),
        "crop_size": int(preset.crop_size[0]),
        "interpolation": preset.interpolation.value,
        "mean": [float(m) for m in preset.mean],
        "std": [float(s) for s in preset.std],
    }


#: largest difference, relative to the largest feature, accepted between ONNX Runtime's
#: backbone features and torch's (float32 kernels sum in different orders)
FEATURE_TOLERANCE = 1e-5


class CheckedExtractor:
    """A frozen backbone run by ONNX Runtime on CPU (2-8x faster than eager torch on these
    networks, BENCHMARKS.md), checked against torch on the first batch it sees: where the two
    differ by more than :data:`FEATURE_TOLERANCE` (relative), or the backbone does not export,
    every batch goes to torch, and the log says why.

    ``input_names`` name the backbone's inputs (``images``; a text encoder's ``tokens``,
    ``lengths``); the batch axis of each is dynamic, and the sequence axis of ``tokens``
    (:func:`~dlzoo.onnx_io.batch_axes`, as ``dlzoo export`` writes them)."""

    def __init__(
        self,
        backbone: nn.Module,
        torch_extractor: Any,
        threads: int | None = None,
        input_names: Sequence[str] = ("images",),
    ):
        self.backbone, self.torch_extractor, self.threads = backbone, torch_extractor, threads
        self.input_names = tuple(input_names)
        self.session: Any = None
        self.checked = False
        self.runtime = "onnxruntime"

    def _export(self, inputs: tuple[torch.Tensor, ...]) -> None:
        axes = batch_axes(self.input_names, ["features"])
        with tempfile.TemporaryDirectory(prefix="dlzoo-features-") as folder:
            path = Path(folder) / "backbone.onnx"
            example = tuple(x[:2].contiguous() for x in inputs)
            write_onnx(self.backbone, example, path, self.input_names, ["features"], axes)
            self.session = ExportedModel(path, ["features"], self.threads)  # holds the graph

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.runtime == "torch":
            return self.torch_extractor(*inputs)
        if not self.checked:
            self.checked = True
            try:
                self._export(inputs)
                got = self._run(inputs)
            except Exception as err:  # exporters and runtimes raise many types
                return self._fall_back(inputs, f"it does not export ({type(err).__name__})")
            expected = self.torch_extractor(*inputs).float()
            scale = max(1.0, float(expected.abs().max()))
            worst = float((got - expected).abs().max()) / scale
            if worst > FEATURE_TOLERANCE:
                return self._fall_back(inputs, f"features differ by {worst:.2g} (relative)")
            log.info("backbone features by ONNX Runtime (%.1g from torch, relative)", worst)
            return expected
        return self._run(inputs)

    def _run(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        feed = {n: x.contiguous().numpy() for n, x in zip(self.input_names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(feed)["features"])

    def _fall_back(self, inputs: tuple[torch.Tensor, ...], why: str) -> torch.Tensor:
        log.info("backbone features by torch: ONNX Runtime not used, %s", why)
        self.runtime, self.session = "torch", None
        return self.torch_extractor(*inputs)


__all__ = [
    "FEATURE_TOLERANCE",
    "TIMM_PREFIX",
    "CheckedExtractor",
    "pretrained_eval_settings",
    "read_state_dict",
    "split_last_linear",
    "timm_backbone",
    "timm_hub_state",
    "timm_name",
    "timm_pretrained_cfg",
]
