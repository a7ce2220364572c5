"""A tiny random BERT and a WordPiece tokenizer trained on the test's own texts, saved as a
pretrained encoder's folder is (``config.json``, ``model.safetensors``, ``tokenizer.json``):
what ``transformers`` and ``tokenizers`` read, with nothing downloaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Sequence[str], vocab_size: int = 150):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        list(texts), WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS)
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece()
    # as published tokenizers are: padding and truncation switched on (dlzoo switches them off)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=16)
    return tokenizer


def write_tiny_encoder(
    folder: Path,
    texts: Sequence[str],
    hidden: int = 16,
    layers: int = 2,
    positions: int = 64,
    vocab_size: int = 150,
    seed: int = 0,
) -> Path:
    """``folder`` holding a random ``BertModel`` and a tokenizer trained on ``texts``."""
    from transformers import BertConfig, BertModel

    tokenizer = train_wordpiece(texts, vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=positions,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(folder)
    return folder
