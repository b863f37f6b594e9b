"""optimum ONNX configs that split a CLIPModel into the two graphs a model bundle holds.

optimum's own CLIP config exports one graph computing logits for image-text pairs. Search needs
each tower alone with its projection: vision (pixel_values -> image_embeds) and text
(input_ids, attention_mask -> text_embeds), the outputs of CLIPModel.get_image_features and
get_text_features. This follows optimum's "split" variant for MetaCLIP 2, for plain CLIP.
"""

from __future__ import annotations

from typing import Any

from optimum.exporters.onnx.model_configs import CLIPOnnxConfig
from optimum.exporters.onnx.model_patcher import CLIPModelPatcher

VISION = "vision"
TEXT = "text"


class CLIPTowerPatcher(CLIPModelPatcher):
    """Replace CLIPModel.forward by one tower's projected embedding while exporting."""

    def __init__(self, config: CLIPTowerOnnxConfig, model: Any, model_kwargs: dict[str, Any] | None = None):
        super().__init__(config, model, model_kwargs)

        if config.tower == VISION:

            def patched_forward(pixel_values=None):
                return {"image_embeds": model.get_image_features(pixel_values=pixel_values)}

        else:

            def patched_forward(input_ids=None, attention_mask=None):
                return {"text_embeds": model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)}

        self.patched_forward = patched_forward


class CLIPTowerOnnxConfig(CLIPOnnxConfig):
    """ONNX config of one CLIP tower with its projection; batch (and text length) dynamic.

    Image height and width stay fixed: CLIP's position embeddings are learnt for one image size.
    """

    _MODEL_PATCHER = CLIPTowerPatcher

    def __init__(self, config: Any, tower: str, **kwargs: Any) -> None:
        super().__init__(config, task="feature-extraction", **kwargs)
        if tower not in (VISION, TEXT):
            raise ValueError(f"unknown CLIP tower {tower!r}")
        self.tower = tower

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        if self.tower == VISION:
            return {"pixel_values": {0: "batch_size"}}
        return {
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "sequence_length"},
        }

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        if self.tower == VISION:
            return {"image_embeds": {0: "batch_size"}}
        return {"text_embeds": {0: "batch_size"}}
