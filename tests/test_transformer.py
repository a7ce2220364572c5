"""TransformerClassifier: padding is ignored, pooling options, pretrained embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlzoo.models import TransformerClassifier


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_extra_padding_does_not_change_the_output(pooling: str) -> None:
    torch.manual_seed(0)
    model = TransformerClassifier(
        vocab_size=60, embedding_dim=16, num_heads=2, pooling=pooling
    ).eval()
    tokens = torch.randint(2, 60, (3, 10))
    tokens[1, 6:] = 1  # a shorter text inside the batch
    padded = torch.cat([tokens, torch.ones(3, 7, dtype=torch.long)], dim=1)
    out = model(tokens)
    assert out.shape == (3, 1)
    torch.testing.assert_close(model(padded), out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(padded, torch.tensor([10, 6, 10])), out, rtol=1e-5, atol=1e-6)


def test_settings_are_checked_and_long_texts_cut() -> None:
    with pytest.raises(ValueError, match="must divide embedding_dim"):
        TransformerClassifier(vocab_size=10, embedding_dim=10, num_heads=3)
    model = TransformerClassifier(vocab_size=10, embedding_dim=8, num_heads=2, max_length=16).eval()
    assert model(torch.randint(2, 10, (2, 40))).shape == (2, 1)  # cut to 16 positions
    multi = TransformerClassifier(vocab_size=10, num_classes=5, embedding_dim=8, num_heads=2)
    assert multi(torch.randint(2, 10, (2, 4))).shape == (2, 5)


def test_pretrained_embeddings(tmp_path: Path) -> None:
    vectors = torch.randn(12, 8)
    torch.save(vectors, tmp_path / "v.pt")
    model = TransformerClassifier(
        vocab_size=12, embedding_dim=8, num_heads=2, pretrained_embeddings=str(tmp_path / "v.pt")
    ).load_pretrained()
    torch.testing.assert_close(model.network.embedding.weight[2:], vectors[2:])
    missing = TransformerClassifier(
        vocab_size=12, embedding_dim=8, num_heads=2, pretrained_embeddings="nope.pt"
    )
    with pytest.raises(FileNotFoundError, match=r"pretrained embeddings not found: nope\.pt"):
        missing.load_pretrained()
