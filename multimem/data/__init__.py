"""Data: sources (one module per format), image decoding, splits, the in-memory dataset."""
