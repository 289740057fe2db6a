"""Torch work that knows no run directory: train, embed and score, evaluate, FAISS indices, one pair."""
