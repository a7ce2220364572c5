"""Pretrained text encoders by name: a local folder, or a Hugging Face hub id read from the hub
cache. Nothing is downloaded where ``HF_HUB_OFFLINE`` is set; elsewhere a missing hub model is
fetched once into the cache. A model that cannot be found is one error line naming the folder,
the hub id, the cache and how to fetch it."""

from __future__ import annotations

import os
from pathlib import Path

#: the files a text encoder's folder holds (``transformers``' ``save_pretrained`` and its
#: fast tokenizer's ``save``)
CONFIG_FILE, TOKENIZER_FILE = "config.json", "tokenizer.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: how to fetch the book's encoder on a machine without the hub (this repository's docs)
FETCH_HINT = "bash fetch_text_encoder.sh DEST (all-MiniLM-L6-v2), or huggingface-cli download"


class PretrainedNotFound(FileNotFoundError):
    """A pretrained encoder that is neither a folder nor in the hub cache."""


def _hub_cache() -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def pretrained_folder(source: str, needs: str = CONFIG_FILE) -> Path:
    """The folder of pretrained encoder ``source`` holding file ``needs``: ``source`` itself
    when it is a folder, else the hub cache's snapshot of the hub id ``source`` (fetched first
    where the hub can be reached and ``HF_HUB_OFFLINE`` is not set)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / needs).is_file():
            raise PretrainedNotFound(
                f"{path} has no {needs}: a text encoder's folder is what transformers' "
                f"save_pretrained writes (config.json, model.safetensors, tokenizer.json)"
            )
        return path
    looks_like_id = source.count("/") <= 1 and not source.startswith((".", "/", "~"))
    if looks_like_id:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, needs)
        if isinstance(cached, str):
            return Path(cached).parent
        if not os.environ.get("HF_HUB_OFFLINE"):
            try:
                from huggingface_hub import snapshot_download

                patterns = [CONFIG_FILE, TOKENIZER_FILE, "*.safetensors", "*.json", "*.txt"]
                folder = Path(snapshot_download(source, allow_patterns=patterns))
                if (folder / needs).is_file():
                    return folder
            except Exception:  # no network, no such id: the one line below
                pass
    hub = f" nor the hub id {source!r} in the Hugging Face cache {_hub_cache()}"
    raise PretrainedNotFound(
        f"text encoder {source!r}: neither a folder ({path.resolve()})"
        + (hub if looks_like_id else "")
        + f"; fetch it ({FETCH_HINT}) and pass its folder as --model.init_args.backbone"
    )
