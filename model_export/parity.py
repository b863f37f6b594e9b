"""Check exported graphs against PyTorch on generated inputs.

fp32: the max absolute difference between onnxruntime's and PyTorch's projected embeddings must
stay within FP32_MAX_ABS_LIMIT, or the export fails. int8: the mean cosine between the int8 and
fp32 graphs' embeddings is measured and recorded (quantisation error is expected, not a bug).
Inputs are random pixel tensors and real sentences of different lengths, padded and unpadded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moodboard.errors import ExportError
from moodboard.model_bundle import Fp32Parity, Int8Parity

logger = logging.getLogger(__name__)

FP32_MAX_ABS_LIMIT = 1e-4
PARITY_SEED = 7
PARITY_IMAGES = 4
PARITY_TEXTS = (
    "a photo of a dress",
    "red",
    "a pair of worn leather boots on a wooden floor",
    "minimalist scandinavian lamp, warm light, soft pastel palette, linen and oak",
    "",
)


@dataclass(frozen=True)
class ParityInputs:
    """Generated inputs: one image batch and several token batches (padded and not)."""

    pixel_values: np.ndarray
    token_batches: list[tuple[np.ndarray, np.ndarray]]


def parity_inputs(tokenizer: Any, *, image_size: int, seed: int = PARITY_SEED) -> ParityInputs:
    """Random normalised-looking pixels and PARITY_TEXTS tokenized alone, together (padded) and to full length."""
    rng = np.random.default_rng(seed)
    pixels = rng.standard_normal((PARITY_IMAGES, 3, image_size, image_size), dtype=np.float32)
    batches = []
    for text in PARITY_TEXTS[:2]:
        enc = tokenizer([text], return_tensors="np")
        batches.append((enc["input_ids"], enc["attention_mask"]))
    for padding in (True, "max_length"):
        enc = tokenizer(list(PARITY_TEXTS), padding=padding, truncation=True, return_tensors="np")
        batches.append((enc["input_ids"], enc["attention_mask"]))
    batches = [(ids.astype(np.int64), mask.astype(np.int64)) for ids, mask in batches]
    return ParityInputs(pixel_values=pixels, token_batches=batches)


def ort_session(path: Path):  # -> onnxruntime.InferenceSession
    """A CPU session with at most two threads (export runs beside other work)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(2, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ExportError(f"onnxruntime cannot load {Path(path).name}: {exc}".splitlines()[0]) from exc


def onnx_embeddings(vision: Path, text: Path, inputs: ParityInputs) -> tuple[np.ndarray, list[np.ndarray]]:
    """Image embeddings and per-batch text embeddings from a pair of ONNX graphs."""
    vision_session, text_session = ort_session(vision), ort_session(text)
    images = vision_session.run(["image_embeds"], {"pixel_values": inputs.pixel_values})[0]
    texts = [
        text_session.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0]
        for ids, mask in inputs.token_batches
    ]
    return images, texts


def torch_embeddings(model: Any, inputs: ParityInputs) -> tuple[np.ndarray, list[np.ndarray]]:
    """The same embeddings from the PyTorch CLIPModel (get_image_features / get_text_features)."""
    import torch

    with torch.inference_mode():
        images = model.get_image_features(pixel_values=torch.from_numpy(inputs.pixel_values)).numpy()
        texts = [
            model.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).numpy()
            for ids, mask in inputs.token_batches
        ]
    return images, texts


def fp32_parity(model: Any, vision: Path, text: Path, inputs: ParityInputs) -> Fp32Parity:
    """Max abs difference ONNX vs PyTorch; ExportError above FP32_MAX_ABS_LIMIT."""
    ref_images, ref_texts = torch_embeddings(model, inputs)
    images, texts = onnx_embeddings(vision, text, inputs)
    parity = Fp32Parity(
        image_max_abs=float(np.abs(images - ref_images).max()),
        text_max_abs=max(float(np.abs(t - r).max()) for t, r in zip(texts, ref_texts, strict=True)),
    )
    logger.info("fp32 parity: image %.2e, text %.2e", parity.image_max_abs, parity.text_max_abs)
    worst = max(parity.image_max_abs, parity.text_max_abs)
    if not worst <= FP32_MAX_ABS_LIMIT:
        raise ExportError(
            f"ONNX fp32 embeddings differ from PyTorch by {worst:.2e} (limit {FP32_MAX_ABS_LIMIT:.0e})"
        )
    return parity


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine similarity of two (n, dim) arrays."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1)))


def int8_parity(
    fp32: tuple[Path, Path], int8: tuple[Path, Path], inputs: ParityInputs
) -> Int8Parity:
    """Mean cosine of int8 to fp32 embeddings (vision, text) on the same inputs."""
    ref_images, ref_texts = onnx_embeddings(*fp32, inputs)
    images, texts = onnx_embeddings(*int8, inputs)
    parity = Int8Parity(
        image_mean_cosine=mean_cosine(images, ref_images),
        text_mean_cosine=mean_cosine(np.concatenate(texts), np.concatenate(ref_texts)),
    )
    logger.info("int8 mean cosine: image %.4f, text %.4f", parity.image_mean_cosine, parity.text_mean_cosine)
    return parity
