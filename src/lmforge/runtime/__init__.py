"""The neutral floor under training, inference, decoding and the knowledge base: device and
precision, padding a batch, and batched forward passes. It knows no task and no command."""
