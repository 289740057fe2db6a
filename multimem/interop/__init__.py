"""Interoperation with open_clip's own training: split export, checkpoint import."""
