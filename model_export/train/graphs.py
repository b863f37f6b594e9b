"""ONNX graphs of a dual encoder that is not a CLIPModel (LiT with EfficientNet-Lite0).

optimum's configs describe transformers models; the LiT model's image tower is not one. Each tower
is exported with torch.onnx's TorchScript exporter (as optimum does on torch >= 2.9) under the
bundle's names: vision (pixel_values -> image_embeds) and text (input_ids, attention_mask ->
text_embeds), batch and text length dynamic. The exporter's parity check vouches for the graphs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moodboard.errors import ExportError
from model_export.export import OPSET, TEXT_FILE, VISION_FILE


class _Vision(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values)


class _Text(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_text_features(input_ids, attention_mask)


def export_vision_graph(model: Any, path: Path, *, image_size: int = 224) -> Path:
    """Write the vision graph (pixel_values -> image_embeds) of a model with get_image_features."""
    pixels = torch.zeros(2, 3, image_size, image_size)
    _export(_Vision(model.eval()), (pixels,), path, ["pixel_values"], ["image_embeds"],
            {"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}})
    return path


def export_dual_encoder_graphs(model: Any, out_dir: Path, *, image_size: int = 224) -> None:
    """Write VISION_FILE and TEXT_FILE for a model with get_image_features / get_text_features."""
    model = model.eval()
    export_vision_graph(model, out_dir / VISION_FILE, image_size=image_size)
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2866, 49407], [49406, 736, 49407, 49407, 49407, 49407, 49407]])
    mask = (torch.arange(ids.shape[1])[None] < torch.tensor([[7], [3]])).long()
    _export(_Text(model), (ids, mask), out_dir / TEXT_FILE, ["input_ids", "attention_mask"], ["text_embeds"],
            {"input_ids": {0: "batch_size", 1: "sequence_length"},
             "attention_mask": {0: "batch_size", 1: "sequence_length"}, "text_embeds": {0: "batch_size"}})
    stray = [p.name for p in out_dir.iterdir() if p.name not in (VISION_FILE, TEXT_FILE)]
    if stray:
        raise ExportError(f"the export wrote external data files {stray}; graphs must be self-contained")


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict[str, dict[int, str]]) -> None:
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, dynamic_axes=axes)
    except Exception as exc:  # torch.onnx raises many unrelated types
        raise ExportError(f"ONNX export failed: {exc}".splitlines()[0]) from exc
