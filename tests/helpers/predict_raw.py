"""In a fresh process: restore each DataModule and model from a checkpoint alone, run raw
inputs through the DataModule's preprocessor and the model, and write the task's CSV rows.

    python predict_raw.py spec.json

``spec.json`` is a list of ``{"datamodule", "model", "ckpt", "raw", "out"}`` (class paths; raw
inputs as JSON, or ``{"files": [...]}`` for image files read as bytes).
"""

import csv
import importlib
import json
import sys
from pathlib import Path

import torch


def load(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def main(spec_file: str) -> None:
    for entry in json.loads(Path(spec_file).read_text()):
        dm = load(entry["datamodule"]).from_checkpoint(entry["ckpt"])
        model = load(entry["model"]).load_from_checkpoint(entry["ckpt"], weights_only=True)
        raw = entry["raw"]
        if isinstance(raw, dict):
            raw = [Path(f).read_bytes() for f in raw["files"]]
        preprocessor = dm.preprocessor
        batch = preprocessor.collate(preprocessor.encode(raw))
        with torch.inference_mode():
            out = model.eval().predict_step((batch,), 0)
        classes = [str(c) for c in dm.classes] if getattr(dm, "classes", None) else None
        header, cells = model.task.csv(model.task.decode(out, classes))
        with open(entry["out"], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", *header])
            writer.writerows([i, *row] for i, row in enumerate(cells))


if __name__ == "__main__":
    main(sys.argv[1])
