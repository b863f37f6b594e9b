"""Export-time tooling: CLIP checkpoints to model bundles (ONNX graphs, tokenizer, manifest).

Needs torch, transformers and optimum, so it is never shipped to Lambda and functions/ never
imports it. Entry points: `model_export.export.export_model` and `export_tiny`.
"""
