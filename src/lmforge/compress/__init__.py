"""Making trained models smaller and faster: quantization, distillation, pruning, ONNX export.

Distillation, pruning and bf16 quantization leave plain HF folders that transformers loads by
itself; int8 folders add a small quantization.json that `lmforge.inference.load` (so `predict`,
`evaluate`, `serve`) recognises. `compare` measures any of them side by side.
"""
