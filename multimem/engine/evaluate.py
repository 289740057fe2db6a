"""Utility of a model on S_E: retrieval Recall@K both ways and zero-shot accuracy over class labels."""
from __future__ import annotations

import numpy as np
import torch

from multimem import modalities
from multimem.data.dataset import PairData
from multimem.engine.score import embed_clean, encode_texts
from multimem.data.splits import EXTRA
from multimem.model.tokenizer import CompactTokenizer

KS = (1, 5, 10)


def recall_at_k(query: torch.Tensor, gallery: torch.Tensor, ks=KS) -> dict[int, float]:
    """Query i's match is gallery i; Recall@K = share of queries whose match ranks in the top K."""
    sims = query @ gallery.T
    target = sims.diagonal().unsqueeze(1)
    rank = (sims > target).sum(1)  # ties count in the query's favour
    return {k: float((rank < k).float().mean()) for k in ks}


def zero_shot(image: torch.Tensor, labels: list[str], classes: list[str], class_emb: torch.Tensor) -> float:
    pred = (image @ class_emb.T).argmax(1)
    truth = torch.tensor([classes.index(label) for label in labels])
    return float((pred == truth).float().mean())


def evaluate(model, data: PairData, tokenizer: CompactTokenizer, template: str = "a photo of {label}") -> dict:
    rows = data.rows(EXTRA)
    emb = dict(zip(modalities.DEFAULT, embed_clean(model, data, rows)))
    img = emb["image"]
    result: dict = {"n": int(len(rows))}
    for query, gallery in modalities.retrieval_pairs(tuple(emb)):  # every ordered pair of the modalities
        for k, v in recall_at_k(emb[query], emb[gallery]).items():
            result[f"{modalities.cross_kind(query, gallery)}_R@{k}"] = v
    labels = [data.pairs[i].label for i in rows]
    if len(rows) and all(label is not None for label in labels):
        classes = sorted({p.label for p in data.pairs if p.label is not None})
        prompts = [template.format(label=c.lower()) for c in classes]
        class_emb = encode_texts(model, tokenizer(prompts))
        result["zero_shot_top1"] = zero_shot(img, labels, classes, class_emb)
        result["zero_shot_classes"] = len(classes)
        result["zero_shot_chance"] = float(max(np.unique(labels, return_counts=True)[1]) / len(labels))
    return result
