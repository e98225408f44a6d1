"""Making trained models smaller and faster: quantization, distillation, pruning.

Each module works on plain transformers models and leaves plain HF folders behind, so `predict`,
`evaluate`, `serve` and transformers itself load the results without lmforge-specific code.
"""
