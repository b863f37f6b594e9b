"""Random CLIP checkpoints built locally, for tests (tiny) and performance work (base).

The hub cannot be reached here, so tests need a CLIP that exists without a download. These are
ordinary transformers CLIPModel checkpoints (weights, the real CLIP tokenizer, CLIPImageProcessor)
so they take exactly the export path a real checkpoint takes. Weights are random but seeded: the
same size and seed always give the same files, hence the same bundle fingerprint.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from moodboard.errors import ConfigError
from model_export.tokenizer import CONTEXT_LENGTH, VOCAB_SIZE, build_clip_tokenizer

logger = logging.getLogger(__name__)

SEED = 20241125
BOS_ID = VOCAB_SIZE - 2
EOS_ID = VOCAB_SIZE - 1

# size -> (source id written to the manifest, text tower, vision tower, projection dim)
SIZES: dict[str, tuple[str, dict, dict, int]] = {
    "tiny": (
        "tiny-random-clip",
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
        64,
    ),
    # The shape of openai/clip-vit-base-patch32: same compute, random weights.
    "base": (
        "random-vit-b-32",
        {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
        {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        512,
    ),
}


def tiny_source_id(size: str) -> str:
    """The source id a random checkpoint of this size is recorded under."""
    return _size(size)[0]


def _size(size: str) -> tuple[str, dict, dict, int]:
    try:
        return SIZES[size]
    except KeyError:
        raise ConfigError(f"unknown random CLIP size {size!r}: expected one of {', '.join(SIZES)}") from None


def build_tiny_clip(out_dir: Path, *, size: str = "tiny", seed: int = SEED) -> Path:
    """Build a seeded random CLIP and save it as a transformers checkpoint directory.

    The directory holds the model (safetensors), CLIPTokenizerFast with OpenAI's BPE vocabulary
    and a default CLIPImageProcessor (224 px, bicubic, OpenAI mean/std), like a hub checkpoint.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    _, text, vision, projection_dim = _size(size)
    config = CLIPConfig(
        text_config={
            **text,
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": CONTEXT_LENGTH,
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": EOS_ID,
        },
        vision_config={**vision, "image_size": 224, "patch_size": 32},
        projection_dim=projection_dim,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(out_dir)
    with tempfile.TemporaryDirectory(prefix="clip-vocab-") as vocab_dir:
        tokenizer = build_clip_tokenizer(Path(vocab_dir))
        if tokenizer.bos_token_id != BOS_ID or tokenizer.eos_token_id != EOS_ID:
            raise ConfigError("the CLIP vocabulary does not end with <|startoftext|>, <|endoftext|>")
        tokenizer.save_pretrained(out_dir)
    CLIPImageProcessor().save_pretrained(out_dir)
    logger.info("built random CLIP (%s, seed %d) in %s", size, seed, out_dir)
    return out_dir
