"""Caption words outside the compact vocabulary are counted, per subset, so the run can say so."""
import numpy as np
import torch

from multimem.model import factory
from multimem.data.dataset import PairData
from multimem.pipeline.data import unknown_tokens
from multimem.data.sources.base import Pair
from multimem.model.tokenizer import UNK, CompactTokenizer


def data_with(captions: list[tuple[str, ...]], subsets: list[str]) -> PairData:
    pairs = [Pair(str(i), f"{i}.png", c) for i, c in enumerate(captions)]
    return PairData(pairs=pairs, subset=np.array(subsets), injected=np.zeros(len(pairs), bool),
                    original_caption=[None] * len(pairs), images=torch.zeros(len(pairs), 3, 4, 4, dtype=torch.uint8))


def test_unknown_tokens_are_counted_over_all_and_over_s_e():
    tok = CompactTokenizer.fit("mm-tiny", 24, 16, ["a red cat", "a blue dog", "a red dog"])
    data = data_with([("a red cat",), ("a zebra", "a red dog"), ("purple quokka",)], ["shared", "candidate", "extra"])
    data.tokenize(tok)
    # "zebra" and "purple quokka" are not in the fitted vocabulary: each BPE token of them became UNK
    per_caption = (data.tokens == UNK).sum(1).tolist()
    assert per_caption[0] == 0 and per_caption[2] == 0 and per_caption[1] >= 1 and per_caption[3] >= 2
    counts = unknown_tokens(data, tok)
    assert counts == {"all": sum(per_caption), "extra": per_caption[3], "captions_with_unknown": 2}


def test_full_vocabulary_config_has_no_unknown_tokens():
    assert "mm-small-fullvocab" in factory.shipped_models()
    tok = factory.fit_tokenizer("mm-small-fullvocab", ["a red cat"])
    assert tok.token_map is None
    data = data_with([("purple quokka",)], ["extra"])
    data.tokenize(tok)
    assert unknown_tokens(data, tok)["all"] == 0
    assert factory.create("mm-small-fullvocab").token_embedding.num_embeddings == 49408
