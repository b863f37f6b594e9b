"""The ONNX embedder end to end (preprocessing + tokenizer + graphs) against PyTorch CLIPModel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moodboard.embedder import Embedder, EmbedderProtocol, available_cpus
from moodboard.errors import BundleError, ConfigError
from moodboard.model_bundle import load_manifest
from tests.fakes import FakeEmbedder

MAX_ABS_DIFF = 1e-3

TEXTS = [
    "a photo of a dress",
    "A Photo Of A DRESS!!",
    "boho summer maxi dress with floral print",
    "café crème 👗🔥 東京",
    "",
    "minimal scandinavian lamp " * 25,  # over 77 tokens: truncated
]


def scene(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / (seed + 3))], axis=-1)
    pixels = base + rng.normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def images() -> list[Image.Image]:
    rgba = scene(180, 240, 4).convert("RGBA")
    rgba.putalpha(90)
    return [
        scene(640, 480, 1),
        scene(200, 500, 2),
        scene(10, 7, 3),
        rgba,
        scene(300, 300, 5).quantize(32),
        scene(256, 200, 6).convert("L"),
        scene(224, 224, 7),
    ]


@pytest.fixture(scope="module")
def torch_clip(tmp_path_factory: pytest.TempPathFactory):
    """The same seeded tiny CLIP the bundle was exported from, as a transformers checkpoint."""
    pytest.importorskip("torch", reason="the export extra (torch) is the reference")
    pytest.importorskip("transformers", reason="the export extra (transformers) is the reference")
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

    from model_export.tiny import build_tiny_clip

    path = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip-checkpoint"))
    model = CLIPModel.from_pretrained(path).eval()
    return model, CLIPTokenizerFast.from_pretrained(path), CLIPImageProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def embedder(tiny_bundle: Path) -> Embedder:
    return Embedder.load(tiny_bundle)


def torch_image_embeddings(torch_clip, batch: list[Image.Image]) -> np.ndarray:
    import torch

    model, _, processor = torch_clip
    pixels = processor(images=batch, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = model.get_image_features(pixel_values=pixels)
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def torch_text_embeddings(torch_clip, texts: list[str]) -> np.ndarray:
    import torch

    model, tokenizer, _ = torch_clip
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        features = model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_embed_images_match_pytorch_clip(embedder: Embedder, torch_clip) -> None:
    batch = images()
    ours = embedder.embed_images(batch)
    theirs = torch_image_embeddings(torch_clip, batch)
    assert ours.shape == theirs.shape == (len(batch), embedder.dim)
    assert np.abs(ours - theirs).max() <= MAX_ABS_DIFF


def test_embed_texts_match_pytorch_clip(embedder: Embedder, torch_clip) -> None:
    ours = embedder.embed_texts(TEXTS)
    theirs = torch_text_embeddings(torch_clip, TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), embedder.dim)
    assert np.abs(ours - theirs).max() <= MAX_ABS_DIFF


def test_embeddings_are_float32_unit_rows_of_manifest_dim(embedder: Embedder, tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle)
    assert (embedder.dim, embedder.fingerprint) == (manifest.dim, manifest.fingerprint)
    assert embedder.precision == "fp32"
    for vectors in (embedder.embed_images(images()), embedder.embed_texts(TEXTS)):
        assert vectors.dtype == np.float32 and vectors.shape[1] == manifest.dim
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Different inputs give different vectors (the graphs really ran).
    texts = embedder.embed_texts(["a red dress", "a steel lamp"])
    assert float(texts[0] @ texts[1]) < 0.999


def test_embed_empty_input_gives_zero_rows(embedder: Embedder) -> None:
    assert embedder.embed_images([]).shape == (0, embedder.dim)
    assert embedder.embed_texts([]).shape == (0, embedder.dim)
    assert embedder.embed_texts([]).dtype == np.float32


def test_embed_batches_match_one_at_a_time(tiny_bundle: Path, embedder: Embedder) -> None:
    small_batches = Embedder.load(tiny_bundle, batch_size=3, threads=1, verify=False)
    batch = images()
    together = small_batches.embed_images(batch)
    alone = np.concatenate([embedder.embed_images([image]) for image in batch])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # Padding a short text up to a long neighbour's length must not change its embedding.
    uncached = Embedder.load(tiny_bundle, text_cache_size=0, verify=False)
    together = small_batches.embed_texts(TEXTS)
    alone = np.concatenate([uncached.embed_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


class CountingSession:
    """An onnxruntime session that counts the texts it is run on."""

    def __init__(self, session) -> None:
        self.session = session
        self.texts_run = 0

    def run(self, outputs, feeds):
        self.texts_run += feeds["input_ids"].shape[0]
        return self.session.run(outputs, feeds)


def test_texts_embedded_before_come_from_the_cache(tiny_bundle: Path) -> None:
    cached = Embedder.load(tiny_bundle, verify=False)
    uncached = Embedder.load(tiny_bundle, text_cache_size=0, verify=False)
    counter = cached._text = CountingSession(cached._text)
    first = cached.embed_texts(["a photo of a dress", "red boots"])
    assert counter.texts_run == 2
    mixed = cached.embed_texts(["red boots", "a steel lamp", "a photo of a dress", "a steel lamp"])
    assert counter.texts_run == 3  # only "a steel lamp", once
    np.testing.assert_allclose(mixed, uncached.embed_texts(["red boots", "a steel lamp", "a photo of a dress",
                                                            "a steel lamp"]), atol=1e-5)
    np.testing.assert_array_equal(mixed[[2, 0]], first)
    mixed[:] = 0  # a caller changing its result must not change what the cache hands out next
    np.testing.assert_array_equal(cached.embed_texts(["a photo of a dress"]), first[:1])


def test_the_text_cache_keeps_the_most_recent_texts(tiny_bundle: Path) -> None:
    small = Embedder.load(tiny_bundle, text_cache_size=2, verify=False)
    counter = small._text = CountingSession(small._text)
    for text in ("one", "two", "three", "three", "two"):
        small.embed_texts([text])
    assert counter.texts_run == 3
    small.embed_texts(["one"])  # evicted: run again
    assert counter.texts_run == 4


def test_negative_text_cache_size_raises_config_error(tiny_bundle: Path) -> None:
    with pytest.raises(ConfigError, match="text cache size"):
        Embedder.load(tiny_bundle, text_cache_size=-1, verify=False)


def test_embed_texts_rejects_a_bare_string(embedder: Embedder) -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        embedder.embed_texts("a dress")


def test_int8_precision_loads_and_stays_close_to_fp32(tiny_bundle: Path, embedder: Embedder) -> None:
    int8 = Embedder.load(tiny_bundle, precision="int8", verify=False)
    assert int8.precision == "int8" and int8.fingerprint == embedder.fingerprint
    image_cos = np.sum(int8.embed_images(images()) * embedder.embed_images(images()), axis=1)
    text_cos = np.sum(int8.embed_texts(TEXTS) * embedder.embed_texts(TEXTS), axis=1)
    assert image_cos.mean() > 0.95 and text_cos.mean() > 0.9


def test_load_unknown_precision_raises_bundle_error(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"no fp16 vision graph \(exported precisions: fp32, int8\)"):
        Embedder.load(tiny_bundle, precision="fp16", verify=False)


def test_load_with_bad_thread_count_raises_config_error(tiny_bundle: Path) -> None:
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        Embedder.load(tiny_bundle, threads=0)


def test_load_uses_the_cpus_the_process_may_use(tiny_bundle: Path, embedder: Embedder) -> None:
    assert embedder._vision.get_session_options().intra_op_num_threads == available_cpus()
    assert embedder._vision.get_providers() == ["CPUExecutionProvider"]
    one = Embedder.load(tiny_bundle, threads=1, verify=False)
    assert one._text.get_session_options().intra_op_num_threads == 1


def test_load_graph_with_wrong_signature_raises_bundle_error(tiny_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"]["vision"]["fp32"] = manifest["files"]["text"]["fp32"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="text.onnx lacks the input"):
        Embedder.load(broken, verify=False)


def test_load_not_a_bundle_raises_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a model bundle"):
        Embedder.load(tmp_path)


def test_embedder_and_fake_satisfy_the_protocol(embedder: Embedder) -> None:
    assert isinstance(embedder, EmbedderProtocol)
    assert isinstance(FakeEmbedder(), EmbedderProtocol)


def test_importing_embedder_loads_no_onnxruntime_or_torch() -> None:
    code = (
        "import sys, moodboard.embedder, moodboard.images, moodboard.preprocess; "
        "print(sorted(m for m in ('onnxruntime', 'torch', 'transformers', 'optimum') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root / "functions")},
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "[]"
