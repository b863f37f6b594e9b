"""Training on a catalog (`moodboard train`): CLIP fine-tuning and locked-image tuning (LiT).

Needs torch and transformers (the `export` extra); the runtime never imports it. Modules:
captions (texts from product metadata), data (catalog, pixels, split), towers (the models),
trainer (loss, loop, checkpoints, the training record), graphs (ONNX graphs of the LiT model),
near_copy (the bundle's near-copy threshold, measured with the runtime's embedder).
Entry point: `model_export.train.trainer.train`.
"""
