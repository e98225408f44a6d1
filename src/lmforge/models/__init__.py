"""Loading pretrained checkpoints (folder, hub id, GGUF) and building models from size presets."""
