"""RNNClassifier and ImprovedRNN: packing, pretrained embeddings, a fit that learns and reloads."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch

from conftest import make_reviews
from dlzoo.data import TextClassificationDataModule
from dlzoo.models import ImprovedRNN, RNNClassifier


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "cache"))


def test_packed_lstm_equals_unpacked_on_unpadded_input() -> None:
    torch.manual_seed(0)
    packed = ImprovedRNN(vocab_size=50, embedding_dim=8, hidden_size=6).eval()
    plain = ImprovedRNN(vocab_size=50, embedding_dim=8, hidden_size=6, packed=False).eval()
    plain.load_state_dict(packed.state_dict())
    tokens = torch.randint(2, 50, (4, 9))  # no padding
    torch.testing.assert_close(packed(tokens, torch.full((4,), 9)), plain(tokens))


def test_padding_does_not_change_the_packed_output() -> None:
    torch.manual_seed(0)
    model = ImprovedRNN(vocab_size=50, embedding_dim=8, hidden_size=6).eval()
    tokens = torch.randint(2, 50, (3, 7))
    padded = torch.cat([tokens, torch.ones(3, 5, dtype=torch.long)], dim=1)
    lengths = torch.full((3,), 7)
    torch.testing.assert_close(model(padded, lengths), model(tokens, lengths))
    torch.testing.assert_close(model(padded), model(tokens))  # lengths from the padding
    assert model(tokens).shape == (3, 1)


def test_book_architecture() -> None:
    model = ImprovedRNN(vocab_size=25_002)
    assert (
        model.network.lstm.num_layers == 2
        and model.network.lstm.bidirectional
        and model.network.lstm.dropout == 0.5
    )
    assert model.network.embedding.padding_idx == 1 and model.network.embedding.embedding_dim == 300
    assert model.network.fc.in_features == 512
    vanilla = RNNClassifier(vocab_size=100)
    assert isinstance(vanilla.network.rnn, torch.nn.RNN) and vanilla(
        torch.randint(0, 100, (2, 5))
    ).shape == (2, 1)


def test_pretrained_embeddings_load_and_freeze(tmp_path: Path) -> None:
    vectors = torch.randn(30, 8)
    torch.save(vectors, tmp_path / "v.pt")
    model = ImprovedRNN(
        vocab_size=30,
        embedding_dim=8,
        pretrained_embeddings=str(tmp_path / "v.pt"),
        freeze_embeddings=True,
    )
    model.load_pretrained()
    torch.testing.assert_close(model.network.embedding.weight[2:], vectors[2:])
    assert not model.network.embedding.weight[1].any()  # pad row
    assert not model.network.embedding.weight.requires_grad
    wrong = ImprovedRNN(
        vocab_size=30, embedding_dim=16, pretrained_embeddings=str(tmp_path / "v.pt")
    )
    with pytest.raises(ValueError, match="set embedding_dim to 8"):
        wrong.load_pretrained()


def test_fit_learns_and_a_reload_predicts_the_same_on_raw_text(tmp_path: Path) -> None:
    make_reviews(400).to_csv(tmp_path / "r.csv", index=False)
    pl.seed_everything(0)
    dm = TextClassificationDataModule(train_file=str(tmp_path / "r.csv"), batch_size=32)
    model = ImprovedRNN(
        vocab_size=dm.vocab_size,
        pad_index=dm.pad_index,
        embedding_dim=16,
        hidden_size=16,
        dropout=0.2,
        lr=1e-2,
    )
    trainer = pl.Trainer(
        max_epochs=8,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(model, dm)
    assert trainer.callback_metrics["val_acc"] > 0.85
    trainer.save_checkpoint(tmp_path / "m.ckpt")

    raw = ["a great and wonderful film", "boring awful mess", ""]
    restored = ImprovedRNN.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True).eval()
    reloaded_dm = TextClassificationDataModule.from_checkpoint(tmp_path / "m.ckpt")
    assert reloaded_dm.vocab.itos == dm.vocab.itos
    batch = reloaded_dm._collate([(x,) for x in [d[0] for d in reloaded_dm.encode_texts(raw)]])
    probs = restored.predict_proba(batch[0])
    expected = model.eval().predict_proba(
        dm._collate([(x,) for x in [d[0] for d in dm.encode_texts(raw)]])[0]
    )
    torch.testing.assert_close(probs, expected, rtol=0, atol=0)
    assert probs[0] > 0.5 > probs[1]
    pd.DataFrame({"text": raw}).to_csv(tmp_path / "new.csv", index=False)
