"""Model bundle manifest: reading, sha256 verification, graph lookup (no ONNX, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moodboard.errors import BundleError
from moodboard.model_bundle import (
    BundleFiles,
    Fp32Parity,
    ModelManifest,
    ModelSource,
    Parity,
    PreprocessConfig,
    TextSpec,
    compute_fingerprint,
    graph_path,
    load_manifest,
    load_preprocess,
    sha256_file,
    write_manifest,
)

PREPROCESS = PreprocessConfig(
    shortest_edge=224,
    crop_height=224,
    crop_width=224,
    image_mean=(0.48145466, 0.4578275, 0.40821073),
    image_std=(0.26862954, 0.26130258, 0.27577711),
)


def make_bundle(path: Path, *, int8: bool = False) -> ModelManifest:
    """A bundle whose 'graphs' are placeholder bytes: enough for the manifest reader."""
    path.mkdir(parents=True, exist_ok=True)
    vision, text = {"fp32": "vision.onnx"}, {"fp32": "text.onnx"}
    if int8:
        vision["int8"], text["int8"] = "vision.int8.onnx", "text.int8.onnx"
    files = BundleFiles(vision=vision, text=text, tokenizer="tokenizer.json", preprocess="preprocess.json")
    for name in files.all():
        (path / name).write_bytes(f"contents of {name}".encode())
    (path / "preprocess.json").write_text(PREPROCESS.model_dump_json())
    sha = {name: sha256_file(path / name) for name in files.all()}
    manifest = ModelManifest(
        source=ModelSource(id="tiny-random-clip", revision="local", tiny=True),
        dim=64,
        opset=17,
        context_length=77,
        text=TextSpec(bos_id=49406, eos_id=49407, pad_id=49407),
        files=files,
        sha256=sha,
        parity=Parity(fp32=Fp32Parity(image_max_abs=1e-6, text_max_abs=2e-6)),
        fingerprint=compute_fingerprint(
            vision_sha256=sha["vision.onnx"],
            text_sha256=sha["text.onnx"],
            tokenizer_sha256=sha["tokenizer.json"],
            preprocess_sha256=sha["preprocess.json"],
        ),
        created="2026-11-25T07:00:00Z",
    )
    write_manifest(manifest, path)
    return manifest


def edit_manifest(path: Path, **fields: object) -> None:
    """Overwrite fields of a written bundle's manifest.json as raw JSON (no validation on the way)."""
    raw = json.loads((path / "manifest.json").read_text())
    raw.update(fields)
    (path / "manifest.json").write_text(json.dumps(raw))


def test_load_manifest_round_trips_a_valid_bundle(tmp_path: Path) -> None:
    written = make_bundle(tmp_path, int8=True)
    loaded = load_manifest(tmp_path)
    assert loaded == written
    assert loaded.precisions == ["fp32", "int8"]
    assert loaded.tiny is True
    assert graph_path(loaded, tmp_path, "text", "int8") == tmp_path / "text.int8.onnx"


def test_tampered_file_raises_bundle_error_naming_it(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    (tmp_path / "text.onnx").write_bytes(b"edited")
    with pytest.raises(BundleError, match=r"text\.onnx does not match its sha256"):
        load_manifest(tmp_path)


def test_tampered_file_passes_when_verify_is_off(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    (tmp_path / "text.onnx").write_bytes(b"edited")
    assert load_manifest(tmp_path, verify=False).dim == 64


def test_missing_manifest_raises_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"not a model bundle: .*manifest\.json is missing"):
        load_manifest(tmp_path)


def test_missing_listed_file_raises_bundle_error_naming_it(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json is missing"):
        load_manifest(tmp_path)


def test_wrong_format_raises_bundle_error(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    edit_manifest(tmp_path, format="moodboard-index/1")
    with pytest.raises(BundleError, match=r"format 'moodboard-index/1' is not 'moodboard-model/1'"):
        load_manifest(tmp_path)


def test_invalid_field_raises_bundle_error_naming_it(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    edit_manifest(tmp_path, dim="wide")
    with pytest.raises(BundleError, match=r"invalid field dim"):
        load_manifest(tmp_path)


def test_forged_fingerprint_raises_bundle_error(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    edit_manifest(tmp_path, fingerprint="0" * 32)
    with pytest.raises(BundleError, match="fingerprint does not match"):
        load_manifest(tmp_path)


def test_unknown_precision_raises_bundle_error(tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path)
    with pytest.raises(BundleError, match=r"no int8 vision graph \(exported precisions: fp32\)"):
        graph_path(manifest, tmp_path, "vision", "int8")
    with pytest.raises(BundleError, match="no fp16 text graph"):
        graph_path(manifest, tmp_path, "text", "fp16")


def test_unknown_graph_raises_bundle_error(tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path)
    with pytest.raises(BundleError, match="unknown graph 'audio'"):
        graph_path(manifest, tmp_path, "audio")  # type: ignore[arg-type]


def test_fingerprint_ignores_int8_graphs_and_changes_with_the_tokenizer(tmp_path: Path) -> None:
    fp32_only = make_bundle(tmp_path / "a")
    with_int8 = make_bundle(tmp_path / "b", int8=True)
    assert fp32_only.fingerprint == with_int8.fingerprint
    args = dict(vision_sha256="v", text_sha256="t", tokenizer_sha256="k", preprocess_sha256="p")
    assert compute_fingerprint(**args) != compute_fingerprint(**{**args, "tokenizer_sha256": "k2"})


def test_load_preprocess_reads_the_config(tmp_path: Path) -> None:
    manifest = make_bundle(tmp_path)
    assert load_preprocess(manifest, tmp_path) == PREPROCESS
    assert PREPROCESS.resample == 3 and PREPROCESS.rescale_factor == pytest.approx(1 / 255)


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = bytes(range(256)) * 5000
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_precision_hashes_only_the_served_graphs(tmp_path: Path) -> None:
    make_bundle(tmp_path, int8=True)
    (tmp_path / "vision.int8.onnx").write_bytes(b"edited int8 graph")
    assert load_manifest(tmp_path, precision="fp32").dim == 64
    with pytest.raises(BundleError, match=r"vision\.int8\.onnx does not match its sha256"):
        load_manifest(tmp_path, precision="int8")


def test_precision_that_was_not_exported_raises_bundle_error(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    with pytest.raises(BundleError, match="no int8 vision graph"):
        load_manifest(tmp_path, precision="int8")
