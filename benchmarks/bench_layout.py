"""Memory layout and runtime on CPU, side by side (run with ``nox -s bench``).

1. A training step (forward, backward, Adam step) of the book's MNIST ConvNet
   (``mnist_convnet``: 32-64 channels, batch 64) in the default NCHW layout and in channels_last.
2. The frozen MobileNetV2 feature pass of ``cache_features`` on a batch of 32 images: eager torch
   NCHW, eager torch channels_last, ONNX Runtime.

Rounds are interleaved (A, B, A, B ...) and the median per variant reported, so the shared
machine's load falls on both alike. The results replace the ``bench:layout`` section.
"""

from __future__ import annotations

import statistics
import time

import torch
from _common import bench_parser, device_line, saved_results, write_section

from dlzoo.models import ConvNet, FineTuneClassifier
from dlzoo.networks.backbones import CheckedExtractor

START, END = "<!-- bench:layout:start -->", "<!-- bench:layout:end -->"


def _interleaved(variants: dict, rounds: int = 7, repeat: int = 10) -> dict[str, float]:
    """Median milliseconds per call of each variant, rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            times[name].append(1000 * (time.perf_counter() - start) / repeat)
    return {name: statistics.median(t) for name, t in times.items()}


def convnet_step() -> dict[str, float]:
    torch.manual_seed(0)
    images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    variants = {}
    for layout in ("nchw", "channels_last"):
        model = ConvNet(channels=[32, 64], head_sizes=[128], channels_last=layout != "nchw")
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer) -> None:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        variants[layout] = step
    result = _interleaved(variants)
    print("convnet step", result)
    return result


def feature_pass() -> dict[str, float]:
    """Random weights: the time of a convolution does not depend on its values."""
    torch.manual_seed(0)
    images = torch.randn(32, 3, 224, 224)
    model = FineTuneClassifier(backbone="mobilenet_v2", weights=None, cache_features=True).eval()
    nhwc = images.contiguous(memory_format=torch.channels_last)
    last = FineTuneClassifier(
        backbone="mobilenet_v2", weights=None, cache_features=True, channels_last=True
    ).eval()
    last.backbone.load_state_dict(model.backbone.state_dict())
    onnx = CheckedExtractor(model.backbone, model.extract_features, torch.get_num_threads())
    with torch.inference_mode():
        onnx(images)  # exports and checks against torch
        assert onnx.runtime == "onnxruntime"

        def run(fn, x):
            def call() -> None:
                with torch.inference_mode():
                    fn(x)

            return call

        result = _interleaved(
            {
                "torch_nchw": run(model.extract_features, images),
                "torch_channels_last": run(last.extract_features, nhwc),
                "onnxruntime": run(onnx, images),
            },
            rounds=5,
            repeat=2,
        )
    print("feature pass", result)
    return result


def main() -> None:
    parser = bench_parser(__doc__, "layout")
    args = parser.parse_args()
    results, once = saved_results(args)
    once("convnet_step", convnet_step)
    once("feature_pass", feature_pass)
    c, f = results["convnet_step"], results["feature_pass"]
    lines = [START, "## Memory layout and runtime on CPU", "", f"Device: {device_line()}.", ""]
    lines += [
        "Command: `nox -s bench` (`python benchmarks/bench_layout.py`); rounds interleaved, "
        "median ms per call, nothing else of ours running.",
        "",
        "| what | NCHW | channels_last | ONNX Runtime |",
        "|---|---|---|---|",
        f"| book ConvNet (MNIST, batch 64), one training step | {c['nchw']:.2f} | "
        f"{c['channels_last']:.2f} ({c['nchw'] / c['channels_last']:.2f}x) | |",
        f"| frozen MobileNetV2 features, batch 32 of 224x224 | {f['torch_nchw']:.0f} | "
        f"{f['torch_channels_last']:.0f} ({f['torch_nchw'] / f['torch_channels_last']:.2f}x) | "
        f"{f['onnxruntime']:.0f} ({f['torch_nchw'] / f['onnxruntime']:.2f}x) |",
        END,
    ]
    write_section(args.out, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
