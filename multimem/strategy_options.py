"""The mitigation strategies' settings as data: each option's kind, the strategies that read it and its help.

The CLI's flags (`multimem mitigate`, `multimem sweep`) and the Runs page's form are made from this table, and
both parse values with `parse_option`; no torch here, so the dashboard reads it without loading the models.
"""
from __future__ import annotations

from dataclasses import dataclass

from multimem.errors import DataError


@dataclass(frozen=True)
class Option:
    """A setting of one or more strategies as the CLI and the Runs page take it: how its text is parsed (kind),
    the strategies that read it, and what it does (without the strategies' names)."""

    kind: str  # float, int, str, captions (a whole number or 'all'), modalities (image, text or both)
    strategies: tuple[str, ...]
    help: str

    def cli_help(self) -> str:
        return f"{' and '.join(self.strategies)}: {self.help}"


OPTIONS: dict[str, Option] = {
    "std": Option("float", ('noise',), 'σ of the Gaussian noise N(0, σ²) added to each coordinate of the chosen '
                                       "embeddings during training of f and g (default 0.1, the paper's best; see "
                                       '--noise-space)'),
    "modalities": Option("modalities", ('noise',), 'which embeddings get noise: image, text or both (default both)'),
    "noise_space": Option("str", ('noise',), 'where the noise enters: raw (the projection outputs, before '
                                             'l2-normalisation; default) or normalised (the unit vectors the loss '
                                             'sees; noise norm σ√d)'),
    "captions_per_image": Option("captions", ('captions',), 'each step draws one of the first K captions of every '
                                                            "sample; 1 = one fixed caption, 'all' = every caption "
                                                            '(default all)'),
    "n": Option("int", ('removal',), 'number of top-ranked training samples removed before fine-tuning f (default '
                                     '100; 0 = fine-tune only, the control)'),
    "ranking": Option("str", ('removal',), "how samples are ranked: multimem (the parent's scores, S_C only), cosine "
                                           "(f's image-text cosine), random, or multimem-kfold (K reference models "
                                           'score every training sample), or ids (the order of --ids FILE) (default '
                                           'multimem)'),
    "pool": Option("str", ('removal',), 'removable samples: candidate (S_C, the ones with MultiMem scores) or train '
                                        '(S_S and S_C; needs --ranking cosine, random or multimem-kfold) (default '
                                        'candidate)'),
    "ids": Option("str", ('removal',), 'with --ranking ids, a file of sample ids in ranking order: one id per line, '
                                       "or a CSV/Parquet file with an 'id' column (a dashboard list: "
                                       'RUN/lists/NAME.json); --n defaults to the number of ids'),
    "finetune_epochs": Option("int", ('removal',), 'epochs of fine-tuning f on the remaining samples (default 5)'),
    "finetune_lr_scale": Option("float", ('removal',), "fine-tuning peak learning rate as a multiple of the parent's "
                                                       '(default 0.1)'),
    "ranking_seed": Option("int", ('removal',), 'seed of the random ranking (default 0)'),
    "folds": Option("int", ('regroup', 'removal'), 'K reference models (regroup, and removal with --ranking '
                                                   'multimem-kfold); each training sample is held out of exactly one '
                                                   '(default 4)'),
    "fold_seed": Option("int", ('regroup', 'removal'), 'seed of the fold assignment of the K reference models '
                                                       '(default 0)'),
    "every": Option("int", ('regroup',), "rescore the training samples every K epochs (default 10, the paper's)"),
    "top": Option("float", ('regroup',), 'share of training samples put into their own mini-batches (default 0.05)'),
    "hot_crop_min": Option("float", ('regroup',), "targeted augmentation's smallest crop area (default 0.25; training"
                                                  ' 0.5)'),
    "hot_jitter": Option("float", ('regroup',), "targeted augmentation's colour jitter (default 0.5; training 0.3)"),
    "token_dropout": Option("float", ('regroup',), "targeted augmentation's caption word dropout probability (default"
                                                   ' 0.1)'),
    "score_augmentations": Option("int", ('regroup',), 'augmented views per sample for the in-training scores '
                                                       '(default 2)'),
}


def parse_option(option: str, text: str):
    """An option's value from its text (a command-line flag or a form field); a bad value is a DataError."""
    kind = OPTIONS[option].kind
    flag = "--" + option.replace("_", "-")
    text = text.strip()
    try:
        if kind == "float":
            return float(text)
        if kind in ("int", "captions"):
            if kind == "captions" and text.lower() == "all":
                return None
            if not text.lstrip("-").isdigit():
                raise ValueError
            return int(text)
        if kind == "modalities":
            mods = [m.strip() for m in text.lower().split(",") if m.strip()]
            mods = ["image", "text"] if mods in (["both"], ["all"]) else mods
            if not mods or any(m not in ("image", "text") for m in mods):
                raise ValueError
            return tuple(mods)
        return text
    except ValueError:
        what = {"float": "a number", "int": "a whole number", "captions": "a whole number or 'all'",
                "modalities": "image, text or both"}.get(kind, "a value")
        raise DataError(f"{flag} must be {what}, got {text!r}") from None
