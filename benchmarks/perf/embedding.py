"""Section 1, embedding: onnxruntime fp32 and int8 against PyTorch eager on the same weights.

Latency at batch 1 (p50/p95) and throughput at batch 16-32, image and text; int8-vs-fp32 cosine;
parity of the fp32 graph with PyTorch (proves the baseline runs the same weights); FLOPs per image
and the GFLOP/s each engine reaches; and a sweep of the onnxruntime session options that matter
(intra-op threads, graph optimisation level, thread spinning, a pre-optimised graph, dynamic text
length against padding to 77), each against the embedder's default session in the same rounds;
and an image followed by a text, back to back as an image+text query runs them, with the
embedder's own sessions (no pool spinning) against both pools spinning and the vision pool alone
spinning. The embedders here run with their text cache off: this section times the model.

Graph-only timings feed the same preprocessed tensor / token ids to every engine, so the ratio is
the engines' and nothing else; the embedder-level rows add preprocessing and tokenisation.
The onnxruntime sessions are the embedder's own (Embedder._vision / _text: a benchmark shortcut
through private attributes, so the shipped session options are what is measured).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.perf import fixtures
from benchmarks.perf.common import Context, interleaved, progress, row, time_once
from benchmarks.perf.proc import OthersCpu

QUERY_TEXT = "flowing linen summer dress in pastel colours"
LEVELS = ("disabled", "basic", "extended", "all")
KEEP_DEFAULT_WITHIN = 0.05  # a challenger must beat the default p50 by more than this to be recommended
BUSY_SHARE = 0.15  # other processes' CPU share above which thread-count comparisons are not trustworthy


def run(ctx: Context) -> dict[str, Any]:
    """Measure and return {"rows", "details", "recommendations"}."""
    import torch
    from moodboard.embedder import Embedder, available_cpus

    p = ctx.profile
    bundle = fixtures.model_bundle(ctx)
    checkpoint = fixtures.torch_checkpoint(ctx)
    cpus = available_cpus()
    torch.set_num_threads(cpus)
    progress.print(f"  loading fp32, int8 and PyTorch ({p.model_size}, {cpus} threads)")
    # Text cache off: this section times the model; what the cache saves is measured end to end (query section).
    engines = {precision: Embedder.load(bundle, precision=precision, text_cache_size=0) for precision in ("fp32", "int8")}
    fp32 = engines["fp32"]
    images = fixtures.sample_images(max(p.batch_sizes) if not ctx.quick else 16, seed=ctx.seed)
    pixels1 = fp32.preprocessor(images[:1])
    ids1, mask1 = fp32.tokenizer([QUERY_TEXT])
    details: dict[str, Any] = {"model_size": p.model_size, "threads": cpus, "query_text": QUERY_TEXT,
                               "text_tokens": int(ids1.shape[1])}
    flops = _flops(checkpoint, text_tokens=int(ids1.shape[1]))
    details["flops"] = flops
    details.update(_against_torch(ctx, checkpoint, engines, images, pixels1, ids1, mask1))
    image_b1, text_b1, full_b1 = details["image_batch1_ms"], details["text_batch1_ms"], details["embedder_batch1_ms"]
    throughput = details["throughput"]

    progress.print("  onnxruntime session options")
    with OthersCpu() as others:
        sweep = _session_sweep(ctx, bundle, fp32, pixels1, ids1, mask1, cpus)
    details["session_options"] = sweep
    details["sweep_others_cpu_share"] = others.share
    details["text_padding"] = _padding(engines, p.sweep_reps)
    progress.print("  image then text, back to back (as gist_search runs them)")
    details["back_to_back_ms"] = _back_to_back(ctx, bundle, engines, images[1])

    rows = _rows(image_b1, text_b1, full_b1, throughput, details, flops)
    notes = _recommend(sweep, details["text_padding"])
    for name, t in details["back_to_back_ms"].items():
        pair = {setting: t[f"image then prompt, {setting}"]["p50"] for setting in
                (SHIPPED_SPINNING, "both spinning on", VISION_SPINNING)}
        alone = {setting: t[f"image alone, {setting}"]["p50"] for setting in pair}
        best = min(pair, key=pair.get)
        verdict = "keep it" if best == SHIPPED_SPINNING or pair[SHIPPED_SPINNING] <= 1.03 * pair[best] else "change it"
        notes.append(f"{name}: an image then a text takes " + ", ".join(f"{ms:.0f} ms ({setting})" for setting, ms
                                                                        in pair.items())
                     + "; an image alone " + ", ".join(f"{ms:.0f} ms" for ms in alone.values()) + f": {verdict}")
    if others.share is not None and others.share > BUSY_SHARE:
        notes.append(f"other processes used {others.share * 100:.0f}% of the machine's CPU during the sweep: they "
                     f"took cores from onnxruntime's threads, which favours threads=1 and no spinning; re-run on a "
                     f"quiet machine before changing a default")
    return {"rows": rows, "details": details, "recommendations": notes}


# --- engines -------------------------------------------------------------------------------------

def _against_torch(ctx: Context, checkpoint: Path, engines: dict[str, Any], images: list, pixels1: np.ndarray,
                   ids1: np.ndarray, mask1: np.ndarray) -> dict[str, Any]:
    """Parity, batch-1 latency and throughput of onnxruntime fp32 and int8 against PyTorch eager
    (the PyTorch model lives only while this runs)."""
    p = ctx.profile
    model = _torch_model(checkpoint)
    out: dict[str, Any] = {"parity": _parity(model, engines, pixels1, ids1, mask1, images[:8])}
    progress.print("  batch-1 latency (image, text)")
    out["image_batch1_ms"] = interleaved({
        "torch": lambda: _torch_image(model, pixels1),
        **{name: _ort_image(e, pixels1) for name, e in engines.items()},
    }, p.reps)
    out["text_batch1_ms"] = interleaved({
        "torch": lambda: _torch_text(model, ids1, mask1),
        **{name: _ort_text(e, ids1, mask1) for name, e in engines.items()},
    }, p.reps)
    out["embedder_batch1_ms"] = interleaved({
        f"embed_images {name}": (lambda e=e: e.embed_images(images[:1])) for name, e in engines.items()
    } | {f"embed_texts {name}": (lambda e=e: e.embed_texts([QUERY_TEXT])) for name, e in engines.items()}, p.reps)
    progress.print(f"  throughput at batch {', '.join(map(str, p.batch_sizes))}")
    out["throughput"] = {str(b): _throughput(ctx, model, engines, images, b) for b in p.batch_sizes}
    return out


def _throughput(ctx: Context, model: Any, engines: dict[str, Any], images: list, b: int) -> dict[str, Any]:
    """Images and texts per second at batch size b (from the p50 batch time)."""
    reps = ctx.profile.throughput_reps
    fp32 = engines["fp32"]
    pixels = fp32.preprocessor((images * (b // len(images) + 1))[:b])
    ids, mask = fp32.tokenizer((fixtures.SAMPLE_TEXTS * (b // len(fixtures.SAMPLE_TEXTS) + 1))[:b])
    img = interleaved({"torch": lambda: _torch_image(model, pixels),
                       **{n: _ort_image(e, pixels) for n, e in engines.items()}}, reps, warmup=1)
    txt = interleaved({"torch": lambda: _torch_text(model, ids, mask),
                       **{n: _ort_text(e, ids, mask) for n, e in engines.items()}}, reps, warmup=1)
    return {"images_per_s": {n: round(b / (s["p50"] / 1000), 2) for n, s in img.items()},
            "texts_per_s": {n: round(b / (s["p50"] / 1000), 2) for n, s in txt.items()},
            "image_ms": img, "text_ms": txt}


def _torch_model(checkpoint: Path) -> Any:
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(checkpoint).eval()


def _torch_image(model: Any, pixels: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return _tensor(model.get_image_features(pixel_values=torch.from_numpy(pixels))).numpy()


def _torch_text(model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return _tensor(model.get_text_features(input_ids=torch.from_numpy(ids),
                                               attention_mask=torch.from_numpy(mask))).numpy()


def _tensor(out: Any) -> Any:
    """get_*_features returns a tensor (or, in some transformers versions, an output object)."""
    return out if hasattr(out, "numpy") else out.pooler_output


def _ort_image(embedder: Any, pixels: np.ndarray) -> Callable[[], np.ndarray]:
    session = embedder._vision
    return lambda: session.run(["image_embeds"], {"pixel_values": pixels})[0]


def _ort_text(embedder: Any, ids: np.ndarray, mask: np.ndarray) -> Callable[[], np.ndarray]:
    session = embedder._text
    return lambda: session.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _parity(model: Any, engines: dict[str, Any], pixels: np.ndarray, ids: np.ndarray, mask: np.ndarray,
            images: list) -> dict[str, Any]:
    """fp32 graph vs PyTorch (same weights: max abs diff ~1e-6) and int8 vs fp32 cosines."""
    fp32, int8 = engines["fp32"], engines["int8"]
    texts = fixtures.SAMPLE_TEXTS
    img_cos = _cosines(fp32.embed_images(images), int8.embed_images(images))
    txt_cos = _cosines(fp32.embed_texts(texts), int8.embed_texts(texts))
    return {
        "fp32_vs_torch_image_max_abs": float(np.abs(_ort_image(fp32, pixels)() - _torch_image(model, pixels)).max()),
        "fp32_vs_torch_text_max_abs": float(np.abs(_ort_text(fp32, ids, mask)() - _torch_text(model, ids, mask)).max()),
        "int8_vs_fp32_image_cosine": {"mean": float(img_cos.mean()), "min": float(img_cos.min()), "n": len(images)},
        "int8_vs_fp32_text_cosine": {"mean": float(txt_cos.mean()), "min": float(txt_cos.min()), "n": len(texts)},
    }


# --- FLOPs ---------------------------------------------------------------------------------------

def _encoder_flops(tokens: int, hidden: int, mlp: int, layers: int) -> float:
    """Multiply-adds x 2 of a pre-LN transformer encoder: QKV/out projections, MLP, attention."""
    dense = 2 * tokens * (4 * hidden * hidden + 2 * hidden * mlp)
    attention = 2 * 2 * tokens * tokens * hidden
    return float(layers * (dense + attention))


def _flops(checkpoint: Path, *, text_tokens: int) -> dict[str, float]:
    """FLOPs per image and per text (at its token count and padded to 77) from the model config."""
    config = json.loads((checkpoint / "config.json").read_text())
    v, t = config["vision_config"], config["text_config"]
    proj = config.get("projection_dim", 512)
    patches = (v.get("image_size", 224) // v.get("patch_size", 32)) ** 2
    patch_embed = 2 * patches * 3 * v.get("patch_size", 32) ** 2 * v["hidden_size"]
    image = patch_embed + _encoder_flops(patches + 1, v["hidden_size"], v["intermediate_size"],
                                         v["num_hidden_layers"]) + 2 * v["hidden_size"] * proj

    def text(n: int) -> float:
        encoder = _encoder_flops(n, t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"])
        return encoder + 2 * t["hidden_size"] * proj

    return {"image_gflops": image / 1e9, "text_gflops": text(text_tokens) / 1e9, "text77_gflops": text(77) / 1e9}


# --- session options -----------------------------------------------------------------------------

def _session(path: Path, *, threads: int, level: str, spinning: bool = True, save_to: Path | None = None) -> Any:
    import onnxruntime as ort

    opt = ort.GraphOptimizationLevel
    levels = {"disabled": opt.ORT_DISABLE_ALL, "basic": opt.ORT_ENABLE_BASIC,
              "extended": opt.ORT_ENABLE_EXTENDED, "all": opt.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[level]
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
        options.log_severity_level = 3  # the "hardware specific optimisations" warning: known, same machine
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def spins(embedder: Any) -> bool:
    """Whether the embedder's onnxruntime sessions let idle intra-op threads spin (the onnxruntime
    default unless session.intra_op.allow_spinning is "0")."""
    try:
        value = embedder._vision.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    except Exception:  # noqa: BLE001 - an unset entry raises in some onnxruntime versions
        return True
    return value != "0"


def spinning_name(spinning: bool) -> str:
    return "spinning on" if spinning else "spinning off"


def embedder_with_spinning(embedder: Any, bundle: Path, spinning: bool, text_spinning: bool | None = None) -> Any:
    """The same model as `embedder`, its sessions built with thread spinning on or off
    (session.intra_op.allow_spinning; the text session's as `text_spinning` when given), everything
    else as the embedder's own."""
    from moodboard.embedder import Embedder, available_cpus
    from moodboard.model_bundle import graph_path

    manifest, precision = embedder.manifest, embedder.precision
    threads = available_cpus()
    return Embedder(manifest=manifest, precision=precision,
                    vision=_session(graph_path(manifest, bundle, "vision", precision), threads=threads, level="all",
                                    spinning=spinning),
                    text=_session(graph_path(manifest, bundle, "text", precision), threads=threads, level="all",
                                  spinning=spinning if text_spinning is None else text_spinning),
                    tokenizer=embedder.tokenizer, preprocessor=embedder.preprocessor, batch_size=embedder.batch_size,
                    text_cache_size=embedder.text_cache_size)


SHIPPED_SPINNING = "shipped: both spinning off"
VISION_SPINNING = "vision spinning on, text off"


def _back_to_back(ctx: Context, bundle: Path, engines: dict[str, Any], image: Any) -> dict[str, Any]:
    """An image and then a text (an image+text query; the text cache is off in this section), with
    the embedder's own sessions (no spinning) against both pools spinning and the vision pool alone
    spinning: each session has its own intra-op pool, and spinning threads of the idle one keep the
    cores from the busy one."""
    out: dict[str, Any] = {}
    prompt = ["a photo of a dress"]
    for name, embedder in engines.items():
        by_setting = {SHIPPED_SPINNING: embedder, "both spinning on": embedder_with_spinning(embedder, bundle, True),
                      VISION_SPINNING: embedder_with_spinning(embedder, bundle, True, text_spinning=False)}
        contenders: dict[str, Any] = {}
        for setting, e in by_setting.items():
            contenders[f"image then prompt, {setting}"] = (
                lambda e=e: (e.embed_images([image]), e.embed_texts(prompt)))
            contenders[f"image alone, {setting}"] = lambda e=e: e.embed_images([image])
        out[name] = interleaved(contenders, ctx.profile.sweep_reps)
    return out


def _configs(cpus: int, spinning: bool) -> dict[str, dict[str, Any]]:
    """The embedder's own options ("default": all CPUs, level "all", its spinning setting) and one
    change at a time."""
    configs: dict[str, dict[str, Any]] = {
        "default": {"threads": cpus, "level": "all", "spinning": spinning},
        "level=extended": {"threads": cpus, "level": "extended", "spinning": spinning},
        "level=basic": {"threads": cpus, "level": "basic", "spinning": spinning},
        "level=disabled": {"threads": cpus, "level": "disabled", "spinning": spinning},
        spinning_name(not spinning): {"threads": cpus, "level": "all", "spinning": not spinning},
    }
    if cpus > 1:
        configs["threads=1"] = {"threads": 1, "level": "all", "spinning": spinning}
    return configs


def _session_sweep(ctx: Context, bundle: Path, fp32: Any, pixels: np.ndarray, ids: np.ndarray, mask: np.ndarray,
                   cpus: int) -> dict[str, Any]:
    """Per graph and precision: session load seconds and batch-1 p50 of each option set."""
    from moodboard.model_bundle import graph_path

    feeds = {"vision": {"pixel_values": pixels}, "text": {"input_ids": ids, "attention_mask": mask}}
    outputs = {"vision": "image_embeds", "text": "text_embeds"}
    spinning = spins(fp32)
    return {f"{graph} {precision}": _sweep_one(ctx, graph_path(fp32.manifest, bundle, graph, precision),
                                               feeds[graph], outputs[graph], cpus, spinning)
            for graph in ("vision", "text") for precision in ("fp32", "int8")}


def _sweep_one(ctx: Context, path: Path, feed: dict[str, np.ndarray], output: str, cpus: int,
               spinning: bool) -> dict[str, Any]:
    """One graph's option sets, timed in the same rounds (plus one pre-optimised graph: saved at
    level "all", loaded with optimisation disabled, which is what saves load time)."""
    sessions, loads = {}, {}
    for name, config in _configs(cpus, spinning).items():
        loads[name], sessions[name] = time_once(lambda config=config: _session(path, **config))
    optimized = ctx.cache / "optimized" / f"{ctx.profile.model_size}-{path.stem}.all.onnx"
    optimized.parent.mkdir(parents=True, exist_ok=True)
    _session(path, threads=cpus, level="all", spinning=spinning, save_to=optimized)
    loads["pre-optimised"], sessions["pre-optimised"] = time_once(
        lambda: _session(optimized, threads=cpus, level="disabled", spinning=spinning))
    timings = interleaved({name: (lambda s=s: s.run([output], feed)) for name, s in sessions.items()},
                          ctx.profile.sweep_reps)
    return {name: {"load_s": round(loads[name], 3), "p50_ms": timings[name]["p50"], "p95_ms": timings[name]["p95"]}
            for name in sessions}


def _padding(engines: dict[str, Any], reps: int) -> dict[str, Any]:
    """Text at its own length (the embedder's batch-longest padding) against padding to 77."""
    out: dict[str, Any] = {}
    for name, embedder in engines.items():
        context = embedder.tokenizer.context_length
        pad = embedder.tokenizer.pad_id
        for label, texts in (("batch 1", [QUERY_TEXT]), ("batch 16", fixtures.SAMPLE_TEXTS[:16])):
            ids, mask = embedder.tokenizer(texts)
            ids77 = np.full((ids.shape[0], context), pad, np.int64)
            mask77 = np.zeros((ids.shape[0], context), np.int64)
            ids77[:, : ids.shape[1]], mask77[:, : ids.shape[1]] = ids, mask
            dynamic, padded = _ort_text(embedder, ids, mask), _ort_text(embedder, ids77, mask77)
            timings = interleaved({"dynamic": dynamic, "pad77": padded}, reps)
            out[f"{name} {label}"] = {
                "tokens": int(ids.shape[1]), "dynamic_p50_ms": timings["dynamic"]["p50"],
                "pad77_p50_ms": timings["pad77"]["p50"],
                "max_abs_diff": float(np.abs(dynamic() - padded()).max()),
                # int8 graphs quantise activations per tensor, so padding changes the scales a little
                "min_cosine": float(_cosines(dynamic(), padded()).min()),
            }
    return out


def _recommend(sweep: dict[str, Any], padding: dict[str, Any]) -> list[str]:
    """Which session option set is fastest per graph; keep the default unless a challenger wins
    by more than KEEP_DEFAULT_WITHIN (noise on a shared machine)."""
    notes = []
    for graph, configs in sweep.items():
        default = configs["default"]["p50_ms"]
        best = min(configs, key=lambda name: configs[name]["p50_ms"])
        gain = 1 - configs[best]["p50_ms"] / default
        if best == "default" or gain <= KEEP_DEFAULT_WITHIN:
            notes.append(f"{graph}: keep the default session options (best challenger {best} within "
                         f"{gain * 100:.0f}% of default {default:.1f} ms)")
        else:
            notes.append(f"{graph}: {best} measured {gain * 100:.0f}% faster than the default "
                         f"({configs[best]['p50_ms']:.1f} vs {default:.1f} ms p50)")
        if configs["pre-optimised"]["load_s"] < 0.8 * configs["default"]["load_s"]:
            notes.append(f"{graph}: a pre-optimised graph loads in {configs['pre-optimised']['load_s']:.2f} s "
                         f"vs {configs['default']['load_s']:.2f} s (cold start)")
    faster = [k for k, v in padding.items() if v["dynamic_p50_ms"] < v["pad77_p50_ms"]]
    speedups = ", ".join(f"{k} {v['pad77_p50_ms'] / v['dynamic_p50_ms']:.1f}x" for k, v in padding.items())
    notes.append(f"text: dynamic length (the embedder's default) faster than padding to 77 in "
                 f"{len(faster)} of {len(padding)} cases ({speedups}); keep it")
    int8 = [v["min_cosine"] for k, v in padding.items() if k.startswith("int8")]
    if int8:
        notes.append(f"text int8: the same text padded to 77 embeds to cosine >= {min(int8):.4f} of its unpadded "
                     f"embedding (dynamic quantisation scales activations per tensor, padding included), so int8 "
                     f"text vectors depend slightly on the batch they are embedded in")
    return notes


# --- rows ----------------------------------------------------------------------------------------

def _rows(image_b1: dict, text_b1: dict, full_b1: dict, throughput: dict, details: dict, flops: dict) -> list[dict]:
    rows = []
    torch_img, torch_txt = image_b1["torch"]["p50"], text_b1["torch"]["p50"]
    targets = {"fp32": 1.3, "int8": 2.0}
    for name in ("fp32", "int8"):
        value = image_b1[name]["p50"]
        speedup = torch_img / value
        rows.append(row(f"image batch 1 p50, onnxruntime {name}", value, "ms", baseline="PyTorch eager",
                        baseline_value=torch_img, target=f">= {targets[name]}x faster than PyTorch",
                        met=speedup >= targets[name],
                        note=f"p95 {image_b1[name]['p95']:.1f} ms; {flops['image_gflops'] / value * 1000:.0f} GFLOP/s"))
    rows.append(row("image batch 1 p50, int8 vs fp32", image_b1["int8"]["p50"], "ms", baseline="onnxruntime fp32",
                    baseline_value=image_b1["fp32"]["p50"]))
    for name in ("fp32", "int8"):
        rows.append(row(f"text batch 1 p50, onnxruntime {name}", text_b1[name]["p50"], "ms",
                        baseline="PyTorch eager", baseline_value=torch_txt,
                        note=f"{details['text_tokens']} tokens; p95 {text_b1[name]['p95']:.1f} ms"))
    for name in ("fp32", "int8"):
        rows.append(row(f"embed_images([1 image]) {name} (incl. preprocessing)", full_b1[f"embed_images {name}"]["p50"],
                        "ms", baseline="graph only", baseline_value=image_b1[name]["p50"], ratio_kind="relative"))
    for b, t in throughput.items():
        for name in ("fp32", "int8"):
            rows.append(row(f"image throughput batch {b}, {name}", t["images_per_s"][name], "img/s",
                            baseline="PyTorch eager", baseline_value=t["images_per_s"]["torch"], better="higher"))
            rows.append(row(f"text throughput batch {b}, {name}", t["texts_per_s"][name], "texts/s",
                            baseline="PyTorch eager", baseline_value=t["texts_per_s"]["torch"], better="higher"))
    for name, t in details["back_to_back_ms"].items():
        for other in (VISION_SPINNING, "both spinning on"):
            rows.append(row(f"image then text, back to back, {name}, {SHIPPED_SPINNING}",
                            t[f"image then prompt, {SHIPPED_SPINNING}"]["p50"], "ms", baseline=other,
                            baseline_value=t[f"image then prompt, {other}"]["p50"],
                            note=f"image alone {t[f'image alone, {SHIPPED_SPINNING}']['p50']:.1f} ms "
                                 f"({other}: {t[f'image alone, {other}']['p50']:.1f} ms)"))
    parity = details["parity"]
    rows.append(row("int8 vs fp32 image embedding cosine (mean)", parity["int8_vs_fp32_image_cosine"]["mean"], "",
                    better="higher", note=f"min {parity['int8_vs_fp32_image_cosine']['min']:.4f}"))
    rows.append(row("int8 vs fp32 text embedding cosine (mean)", parity["int8_vs_fp32_text_cosine"]["mean"], "",
                    better="higher", note=f"min {parity['int8_vs_fp32_text_cosine']['min']:.4f}"))
    rows.append(row("fp32 graph vs PyTorch, image max abs diff", parity["fp32_vs_torch_image_max_abs"], "",
                    note="same weights in both engines"))
    return rows
