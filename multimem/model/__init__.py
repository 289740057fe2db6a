"""open_clip models: the factory (create, load, save), tokenizer, augmentations, configs as JSON."""
