"""The export path end to end on the tiny random CLIP: files, manifest, parity, int8, determinism.

Parity is re-measured here on inputs the exporter never saw, with a PyTorch model rebuilt from
the same seed, so a wrong graph cannot pass on the exporter's own word.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from moodboard.errors import ConfigError, ExportError, HubUnreachable
from moodboard.model_bundle import graph_path, load_manifest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_FILES = {
    "manifest.json",
    "vision.onnx",
    "text.onnx",
    "vision.int8.onnx",
    "text.int8.onnx",
    "tokenizer.json",
    "preprocess.json",
}


@pytest.fixture(scope="module")
def tiny_torch(tmp_path_factory: pytest.TempPathFactory):
    """The tiny CLIP as PyTorch (rebuilt from the same seed) and its tokenizer."""
    from transformers import CLIPModel, CLIPTokenizerFast

    from model_export.tiny import build_tiny_clip

    path = build_tiny_clip(tmp_path_factory.mktemp("tiny-checkpoint"))
    return CLIPModel.from_pretrained(path).eval(), CLIPTokenizerFast.from_pretrained(path)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _texts(tokenizer, texts: list[str], **kwargs) -> dict[str, np.ndarray]:
    enc = tokenizer(texts, return_tensors="np", **kwargs)
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


NEW_TEXTS = ["boho summer maxi dress", "lamp", "two black sneakers with white soles on concrete"]


def test_tiny_export_writes_every_bundle_file(tiny_bundle: Path) -> None:
    # Dot-files are not bundle files: a load leaves its integrity seal (moodboard.integrity) beside them.
    assert {p.name for p in tiny_bundle.iterdir() if not p.name.startswith(".")} == BUNDLE_FILES


def test_tiny_manifest_verifies_and_describes_the_model(tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle, verify=True)
    raw = json.loads((tiny_bundle / "manifest.json").read_text())

    assert manifest.source.model_dump() == {"id": "tiny-random-clip", "revision": "local", "tiny": True}
    assert (manifest.dim, manifest.opset, manifest.context_length) == (64, 17, 77)
    assert manifest.text.model_dump() == {"bos_id": 49406, "eos_id": 49407, "pad_id": 49407}
    assert manifest.precisions == ["fp32", "int8"]
    assert set(raw["sha256"]) == BUNDLE_FILES - {"manifest.json"}
    assert len(manifest.fingerprint) >= 16
    assert {"torch", "transformers", "optimum"} <= set(manifest.exporter)


def test_graphs_have_contract_signatures(tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle)
    for precision in ("fp32", "int8"):
        vision = _session(graph_path(manifest, tiny_bundle, "vision", precision))
        text = _session(graph_path(manifest, tiny_bundle, "text", precision))
        assert [(i.name, i.type, i.shape[1:]) for i in vision.get_inputs()] == [("pixel_values", "tensor(float)", [3, 224, 224])]
        assert [(o.name, o.shape[1]) for o in vision.get_outputs()] == [("image_embeds", 64)]
        assert [(i.name, i.type) for i in text.get_inputs()] == [("input_ids", "tensor(int64)"), ("attention_mask", "tensor(int64)")]
        assert all(isinstance(dim, str) for i in text.get_inputs() for dim in i.shape)  # batch and sequence dynamic
        assert [(o.name, o.shape[1]) for o in text.get_outputs()] == [("text_embeds", 64)]


def test_fp32_parity_is_recorded_and_holds_on_new_inputs(tiny_bundle: Path, tiny_torch) -> None:
    import torch

    model, tokenizer = tiny_torch
    manifest = load_manifest(tiny_bundle)
    assert manifest.parity.fp32.image_max_abs <= 1e-4
    assert manifest.parity.fp32.text_max_abs <= 1e-4

    pixels = np.random.default_rng(12345).uniform(-2, 2, size=(3, 3, 224, 224)).astype(np.float32)
    tokens = _texts(tokenizer, NEW_TEXTS, padding=True)
    with torch.inference_mode():
        ref_images = model.get_image_features(pixel_values=torch.from_numpy(pixels)).numpy()
        ref_texts = model.get_text_features(**{k: torch.from_numpy(v) for k, v in tokens.items()}).numpy()
    images = _session(tiny_bundle / "vision.onnx").run(None, {"pixel_values": pixels})[0]
    texts = _session(tiny_bundle / "text.onnx").run(None, tokens)[0]

    assert images.shape == (3, 64) and texts.shape == (3, 64)
    assert np.abs(images - ref_images).max() <= 1e-4
    assert np.abs(texts - ref_texts).max() <= 1e-4


def test_int8_graphs_stay_close_to_fp32(tiny_bundle: Path, tiny_torch) -> None:
    _, tokenizer = tiny_torch
    manifest = load_manifest(tiny_bundle)
    assert manifest.parity.int8 is not None
    # Measured on the tiny random model: image ~0.9995, text ~0.977 (its 64-wide layers quantise worse
    # than ViT-B/32's, which gives ~0.9998 / 0.998).
    assert manifest.parity.int8.image_mean_cosine > 0.95
    assert manifest.parity.int8.text_mean_cosine > 0.9

    pixels = np.random.default_rng(99).standard_normal((2, 3, 224, 224), dtype=np.float32)
    tokens = _texts(tokenizer, NEW_TEXTS, padding=True)
    for graph, feed in (("vision", {"pixel_values": pixels}), ("text", tokens)):
        fp32 = _session(tiny_bundle / f"{graph}.onnx").run(None, feed)[0]
        int8 = _session(tiny_bundle / f"{graph}.int8.onnx").run(None, feed)[0]
        assert _cosines(fp32, int8).mean() > 0.9, graph


def test_text_graph_accepts_any_sequence_length_and_ignores_padding(tiny_bundle: Path, tiny_torch) -> None:
    _, tokenizer = tiny_torch
    text = _session(tiny_bundle / "text.onnx")
    alone = {t: text.run(None, _texts(tokenizer, [t]))[0] for t in NEW_TEXTS}
    lengths = {_texts(tokenizer, [t])["input_ids"].shape[1] for t in NEW_TEXTS}
    full = text.run(None, _texts(tokenizer, NEW_TEXTS, padding="max_length", max_length=77))[0]

    assert len(lengths) == len(NEW_TEXTS)  # really different lengths
    assert full.shape == (3, 64)
    for row, t in zip(full, NEW_TEXTS, strict=True):
        np.testing.assert_allclose(row, alone[t][0], atol=1e-5)


def test_vision_graph_accepts_any_batch_size(tiny_bundle: Path) -> None:
    vision = _session(tiny_bundle / "vision.onnx")
    pixels = np.random.default_rng(5).standard_normal((5, 3, 224, 224), dtype=np.float32)
    batch = vision.run(None, {"pixel_values": pixels})[0]
    one = vision.run(None, {"pixel_values": pixels[2:3]})[0]
    assert batch.shape == (5, 64)
    np.testing.assert_allclose(one[0], batch[2], atol=1e-5)


def test_same_seed_gives_same_fingerprint(tiny_bundle: Path, tmp_path: Path) -> None:
    from model_export.export import export_tiny

    again = load_manifest(export_tiny(tmp_path / "again"))
    first = load_manifest(tiny_bundle)
    assert again.fingerprint == first.fingerprint
    assert again.precisions == ["fp32"]
    for name in ("vision.onnx", "text.onnx", "tokenizer.json", "preprocess.json"):
        assert again.sha256[name] == first.sha256[name], name


def test_local_checkpoint_with_openai_style_text_config_exports_with_parity(tmp_path: Path) -> None:
    from model_export.export import export_model
    from model_export.tiny import build_tiny_clip

    checkpoint = build_tiny_clip(tmp_path / "checkpoint")
    config = json.loads((checkpoint / "config.json").read_text())
    # openai/clip-vit-base-patch32 keeps the legacy ids, which makes CLIP pool at argmax(input_ids).
    config["text_config"].update(bos_token_id=0, eos_token_id=2, pad_token_id=1)
    (checkpoint / "config.json").write_text(json.dumps(config))

    manifest = load_manifest(export_model(str(checkpoint), tmp_path / "bundle"))

    assert manifest.source.model_dump() == {"id": str(checkpoint), "revision": "local", "tiny": False}
    assert manifest.parity.fp32.text_max_abs <= 1e-4
    assert manifest.text.eos_id == 49407  # special ids come from the tokenizer, not the legacy config


def test_export_fails_above_parity_limit_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_export import parity
    from model_export.export import export_tiny

    monkeypatch.setattr(parity, "FP32_MAX_ABS_LIMIT", 1e-12)
    with pytest.raises(ExportError, match=r"differ from PyTorch by .* \(limit 1e-12\)"):
        export_tiny(tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    from model_export.export import export_tiny

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not a model bundle"):
        export_tiny(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unknown_model_offline_says_hub_unreachable_and_names_tiny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from model_export.export import export_model

    def no_network(*args, **kwargs):
        raise AssertionError("the export tried to open a network connection")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))

    with pytest.raises(HubUnreachable) as caught:
        export_model("nobody-here/no-such-clip", tmp_path / "bundle")
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot reach the Hugging Face Hub" in message and "--tiny" in message
    assert not (tmp_path / "bundle").exists()


def test_cli_export_model_offline_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "moodboard_local.cli", "export-model", "--model", "nobody-here/no-such-clip",
         "--out", str(tmp_path / "bundle")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach the Hugging Face Hub" in lines[0] and "--tiny" in lines[0]


def test_cli_tiny_and_model_together_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard_local.cli import main

    assert main(["export-model", "--tiny", "--model", "openai/clip-vit-base-patch32", "--out", str(tmp_path / "b")]) == 2
    assert "--tiny builds its own random model" in capsys.readouterr().err


def test_cli_without_the_export_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from moodboard_local.cli import main
    from moodboard_local.commands import export_model

    monkeypatch.setattr(export_model, "EXPORT_PACKAGES", ("torch", "no_such_package_for_moodboard"))
    assert main(["export-model", "--tiny", "--out", str(tmp_path / "b")]) == 2
    assert "export-model needs no_such_package_for_moodboard: install moodboard's `export` extra" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bundle_tokenizer_is_openai_clip_bpe(tiny_bundle: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json"))
    # Ids of openai/clip-vit-base-patch32's tokenizer for this sentence.
    assert tokenizer.encode("a photo of a dress").ids == [49406, 320, 1125, 539, 320, 2595, 49407]
    assert tokenizer.get_vocab_size() == 49408
