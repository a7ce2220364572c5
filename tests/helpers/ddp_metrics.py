"""Fit, validate and test a tabular, an image and a text model on 2 CPU processes (DDP).

Run as ``python ddp_metrics.py DATA_DIR OUT_DIR``; rank 0 writes ``OUT_DIR/<kind>.json`` (the
logged val/test metrics) and ``OUT_DIR/<kind>.pt`` (the trained weights), so a test can compare
them with a single-process computation over the same splits.
"""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from setups import SETUPS

data, out = Path(sys.argv[1]), Path(sys.argv[2])
for kind, build in SETUPS.items():
    pl.seed_everything(3, verbose=False)
    model, datamodule = build(data)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    metrics = {}
    for run in (trainer.validate, trainer.test):
        (logged,) = run(model, datamodule=datamodule, verbose=False)
        metrics.update(logged)
    if trainer.is_global_zero:
        (out / f"{kind}.json").write_text(json.dumps(metrics))
        torch.save(model.state_dict(), out / f"{kind}.pt")
