"""`moodboard train`: contrastive training on a catalog's images and captions, then a model bundle.

Methods (model_export.train.towers has the models):
- `finetune`: CLIP's contrastive loss with every weight unfrozen (FashionCLIP's recipe);
- `lit`: locked-image tuning: image embeddings are the locked tower's own, computed once and cached;
  only the text tower, its projection and the temperature learn.

The loss is CLIP's symmetric cross-entropy over a batch, with one change: a batch often holds
several products that share a caption ("a photo of a dress"), so every caption that belongs to a
product counts as a positive for it (targets spread evenly over the positives) instead of treating
all but one as negatives. AdamW (no decay on gains, biases and the temperature), linear warm-up
then cosine decay, a held-out split by product, evaluation after each epoch, early stopping on
held-out caption-to-product R@10 (MRR breaks ties), the best epoch's weights exported. A checkpoint
after each epoch lets an interrupted run resume where it stopped (same arguments, same work dir).
CUDA with bfloat16 autocast when torch sees a GPU, else the CPU in float32 (the GPU path is
written but has not run on a GPU here: no GPU was available when it was built).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.quality import heldout as metrics
from moodboard.catalog import Product
from moodboard.errors import ConfigError, HubUnreachable
from moodboard.integrity import sha256_file
from moodboard.model_bundle import RANDOM_BASE_NOTE, ModelSource, PreprocessConfig, TrainingRecord, load_manifest
from model_export.train import captions as captions_mod
from model_export.train.data import Catalog, load_catalog, load_pixels, normalise
from model_export.train.towers import (
    EFFICIENTNET,
    EFFICIENTNET_DIM,
    EFFICIENTNET_PACKAGE,
    EFFICIENTNET_PREPROCESS,
    EfficientNetTower,
    LitDualEncoder,
    efficientnet_weights,
    lock_clip_vision,
    logit_scale,
    scratch_text_tower,
    trainable_parameters,
)

logger = logging.getLogger(__name__)

METHODS = ("finetune", "lit")
TINY_BASE = "tiny-random-clip"
# Seeded random CLIPs (model_export.tiny): the test model, and ViT-B/32's shape for throughput checks.
RANDOM_BASES = {TINY_BASE: "tiny", "tiny": "tiny", "random-vit-b-32": "base"}
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_EVERY_SECONDS = 30.0  # short epochs are not worth a checkpoint each
EVAL_BATCH = 64
EVAL_K = 10


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (its hash names the checkpoint it may resume)."""

    method: str = "lit"
    base: str = "openai/clip-vit-base-patch32"
    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None  # None: a default for the method and base (default_lr)
    weight_decay: float = 0.1
    warmup: float = 0.1  # share of all steps
    patience: int = 4
    held_out: float = 0.2
    seed: int = 0
    ignore: tuple[str, ...] = ()
    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}: expected {' or '.join(METHODS)}")
        if self.base == EFFICIENTNET and self.method != "lit":
            raise ConfigError(f"--base {EFFICIENTNET} is an image network only: use --method lit")
        for name, value, low in (("epochs", self.epochs, 1), ("batch size", self.batch_size, 2),
                                 ("patience", self.patience, 1)):
            if value < low:
                raise ConfigError(f"{name} must be at least {low}, got {value}")
        if not 0 < self.held_out < 1:
            raise ConfigError(f"--held-out must be between 0 and 1, got {self.held_out}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"--warmup must be in [0, 1), got {self.warmup}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")


def default_lr(config: TrainConfig, *, random_base: bool) -> float:
    """CLIP fine-tuning's usual 1e-5 for a pretrained base; larger for towers that start random."""
    if config.lr is not None:
        return config.lr
    if config.base == EFFICIENTNET or random_base:
        return 1e-3 if config.method == "lit" else 5e-4
    return 1e-5 if config.method == "finetune" else 5e-5


@dataclass
class TrainEvent:
    """What the trainer reports as it goes (the CLI draws its progress bar from these)."""

    kind: str  # "phase" | "images" | "step" | "epoch"
    message: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    held_out: dict[str, Any] = field(default_factory=dict)
    advance: int = 0


Progress = Callable[[TrainEvent], None]


@dataclass
class Base:
    """The model training starts from."""

    kind: str  # "clip" | "efficientnet"
    model: Any
    tokenizer: Any
    preprocess: PreprocessConfig
    info: dict[str, Any]
    processor: Any = None
    tiny: bool = False


def load_base(config: TrainConfig, work: Path) -> Base:
    """The base model: efficientnet-lite0 (LiT), the seeded tiny random CLIP, or a CLIP checkpoint."""
    from model_export.export import _load, _preprocess_config
    from model_export.tokenizer import build_clip_tokenizer

    if config.base == EFFICIENTNET:
        tower = EfficientNetTower()
        model = LitDualEncoder(tower, scratch_text_tower(EFFICIENTNET_DIM, config.seed), image_dim=EFFICIENTNET_DIM)
        tokenizer = build_clip_tokenizer(work / "vocab")
        weights = efficientnet_weights()
        info = {"id": EFFICIENTNET, "revision": _package_version(EFFICIENTNET_PACKAGE), "fingerprint": None,
                "weights_sha256": sha256_file(weights), "weights": f"{EFFICIENTNET_PACKAGE} (ImageNet)"}
        return Base("efficientnet", model, tokenizer, EFFICIENTNET_PREPROCESS, info)
    if config.base in RANDOM_BASES:
        from model_export.tiny import build_tiny_clip, tiny_source_id

        size = RANDOM_BASES[config.base]
        path = build_tiny_clip(work / "base-checkpoint", size=size)
        source_id, revision, tiny = tiny_source_id(size), "local", True
    else:
        from model_export.hub import resolve_checkpoint

        try:
            checkpoint = resolve_checkpoint(config.base)
        except HubUnreachable as exc:
            raise HubUnreachable(f"cannot reach the Hugging Face Hub to download {config.base!r} and it is not "
                                 f"cached; offline, train LiT on the pretrained image network with "
                                 f"--base {EFFICIENTNET} --method lit") from exc
        path, source_id, revision, tiny = checkpoint.path, checkpoint.source_id, checkpoint.revision, False
    model, tokenizer, processor = _load(path)
    weights = next((path / name for name in ("model.safetensors", "pytorch_model.bin") if (path / name).is_file()), None)
    info = {"id": source_id, "revision": revision, "fingerprint": None,
            "weights_sha256": sha256_file(weights) if weights else None}
    return Base("clip", model, tokenizer, _preprocess_config(processor), info, processor=processor, tiny=tiny)


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def pick_device() -> tuple[torch.device, torch.dtype | None]:
    """CUDA with bfloat16 autocast when available (float32 on a GPU without bfloat16, which would need
    float16 with loss scaling), else the CPU in float32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.device("cpu"), None


# --- the loss -----------------------------------------------------------------------------------


def positives(batch_captions: list[frozenset[str]], sampled: list[str]) -> torch.Tensor:
    """mask[i, j] = 1 when text j (the caption sampled for product j) is one of product i's captions."""
    return torch.tensor([[float(text in own) for text in sampled] for own in batch_captions])


def contrastive_loss(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives per row (targets spread evenly over them)."""
    images = F.normalize(images.float(), dim=-1)
    texts = F.normalize(texts.float(), dim=-1)
    logits = scale * images @ texts.T
    mask = mask.to(logits.device)
    image_to_text = F.cross_entropy(logits, mask / mask.sum(dim=1, keepdim=True))
    text_to_image = F.cross_entropy(logits.T, mask.T / mask.T.sum(dim=1, keepdim=True))
    return (image_to_text + text_to_image) / 2


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to the peak, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: gains, biases, embeddings' norms and the temperature are exempt."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "logit_scale" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --- the run ------------------------------------------------------------------------------------


class Trainer:
    """One training run: data, model, loop, held-out figures, checkpoint; `run()` returns the result."""

    def __init__(self, catalog_path: Path, config: TrainConfig, work: Path, *, progress: Progress | None = None,
                 fresh: bool = False, keep_initial: bool = False) -> None:
        self.config = config
        self.keep_initial = keep_initial
        self.work = Path(work)
        self.progress = progress or (lambda event: None)
        self.fresh = fresh
        self.catalog_path = Path(catalog_path)
        self.device, self.amp = pick_device()
        self.started = time.perf_counter()

    def _emit(self, **kwargs: Any) -> None:
        self.progress(TrainEvent(**kwargs))

    # data ------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        config = self.config
        self.work.mkdir(parents=True, exist_ok=True)
        self._emit(kind="phase", message="reading the catalog")
        self.catalog: Catalog = load_catalog(self.catalog_path, ignore=config.ignore)
        ids = [p.id for p in self.catalog.products]
        train_rows, held_rows = metrics.split_products(ids, [p.category for p in self.catalog.products],
                                                       fraction=config.held_out, seed=config.seed)
        self.split_digest = metrics.split_digest([ids[r] for r in held_rows])
        self._emit(kind="phase", message=f"loading the base model {config.base}")
        self.base = load_base(config, self.work)
        self._emit(kind="images", message="decoding images", steps=len(ids))
        pixels, ok = load_pixels(self.catalog.products, self.base.preprocess,
                                 progress=lambda n: self._emit(kind="images", advance=n, steps=len(ids)))
        self.catalog.skipped["undecodable_image"] = int((~ok).sum())
        keep = np.flatnonzero(ok)
        position = {int(row): i for i, row in enumerate(keep)}
        self.train_rows = [position[r] for r in train_rows if r in position]
        self.held_rows = [position[r] for r in held_rows if r in position]
        self.products = [self.catalog.products[r] for r in keep]
        self.captions = [self.catalog.captions[r] for r in keep]
        self.pixels = torch.from_numpy(pixels)
        if len(self.train_rows) < 2 or len(self.held_rows) < 2:
            raise ConfigError(f"too few products to train: {len(self.train_rows)} to train on, "
                              f"{len(self.held_rows)} held out")
        self.held = Catalog(products=self.products, captions=self.captions, source=self.catalog.source,
                            checksum=self.catalog.checksum).held_out(self.held_rows)
        self._tokenize()

    def _tokenize(self) -> None:
        texts = sorted({t for c in self.captions for t in c.texts} | set(self._type_prompts()))
        ids = self.base.tokenizer(texts, truncation=True, max_length=77)["input_ids"]
        self.token_ids = dict(zip(texts, ids))

    def _type_prompts(self) -> list[str]:
        from moodboard.query import type_prompt

        return [type_prompt(p.category) for p in self.products]

    def _encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.token_ids.get(t) or self.base.tokenizer([t], truncation=True, max_length=77)["input_ids"][0]
                for t in texts]
        width = max(len(r) for r in rows)
        pad = self.base.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    # embeddings ------------------------------------------------------------------------------------

    def _autocast(self) -> Any:
        if self.amp is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp)

    def image_features(self, rows: list[int]) -> torch.Tensor:
        """Image embeddings of products (cached for lit, through the model for finetune)."""
        if self.config.method == "lit":
            return self.features[rows].to(self.device)
        pixels = normalise(self.pixels[rows].to(self.device), self.base.preprocess)
        with self._autocast():
            return self.model.get_image_features(pixel_values=pixels)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self._encode(texts)
        with self._autocast():
            return self.model.get_text_features(input_ids=ids, attention_mask=mask)

    def _locked_features(self) -> torch.Tensor:
        """The locked tower's embedding of every product, computed once and cached in the work dir."""
        key = hashlib.sha256(json.dumps({
            "base": self.base.info, "preprocess": self.base.preprocess.model_dump(),
            "catalog": self.catalog.checksum, "ids": [p.id for p in self.products]}, sort_keys=True).encode()
        ).hexdigest()[:16]
        path = self.work / f"image-features-{key}.npy"
        if path.is_file():
            return torch.from_numpy(np.load(path))
        self._emit(kind="images", message="embedding images with the locked tower", steps=len(self.products))
        out = []
        self.model.eval()
        run = self._onnx_image_tower() if self.base.kind == "efficientnet" and self.device.type == "cpu" else None
        with torch.no_grad():
            for start in range(0, len(self.products), EVAL_BATCH):
                pixels = normalise(self.pixels[start:start + EVAL_BATCH].to(self.device), self.base.preprocess)
                if run is not None:
                    out.append(torch.from_numpy(run(pixels.numpy())))
                else:
                    with self._autocast():
                        out.append(self.model.get_image_features(pixel_values=pixels).float().cpu())
                self._emit(kind="images", advance=pixels.shape[0], steps=len(self.products))
        features = torch.cat(out).numpy()
        np.save(path, features)
        return torch.from_numpy(features)

    def _onnx_image_tower(self) -> Callable[[np.ndarray], np.ndarray]:
        """The locked tower as the ONNX graph the bundle will hold, run by onnxruntime: on a CPU about
        5x faster than PyTorch eager for EfficientNet, and the features are the served embeddings."""
        import onnxruntime as ort

        from model_export.train.graphs import export_vision_graph

        path = export_vision_graph(self.model, self.work / "locked-vision.onnx",
                                   image_size=self.base.preprocess.crop_height)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        return lambda pixels: session.run(["image_embeds"], {"pixel_values": pixels})[0]

    @torch.no_grad()
    def evaluate(self, *, full: bool) -> dict[str, Any]:
        """Held-out figures of the model as it is now (full: every figure, else the early-stopping ones)."""
        self.model.eval()
        images = torch.cat([self.image_features(self.held_rows[s:s + EVAL_BATCH]).float().cpu()
                            for s in range(0, len(self.held_rows), EVAL_BATCH)]).numpy()

        def embed(texts: Any) -> np.ndarray:
            texts = list(texts)
            return torch.cat([self.text_features(texts[s:s + EVAL_BATCH]).float().cpu()
                              for s in range(0, len(texts), EVAL_BATCH)]).numpy() if texts else np.zeros((0, 1))

        if full:
            return metrics.strip_per_query(metrics.summary(self.held, images, embed, k=EVAL_K))
        c2p = metrics.caption_to_product(self.held, images, embed, k=EVAL_K)
        t2p = metrics.type_to_product(self.held, images, embed, k=EVAL_K)
        return {f"caption_r_at_{EVAL_K}": c2p[f"r_at_{EVAL_K}"], "caption_mrr": c2p["mrr"],
                f"type_p_at_{EVAL_K}": t2p[f"p_at_{EVAL_K}"]}

    # the loop --------------------------------------------------------------------------------------

    def setup_model(self) -> None:
        config = self.config
        self.model = self.base.model.to(self.device)
        if config.method == "lit" and self.base.kind == "clip":
            lock_clip_vision(self.model)
        if config.method == "lit":
            self.features = self._locked_features()
        self.lr = default_lr(config, random_base=self.base.tiny)
        steps_per_epoch = max(1, len(self.train_rows) // config.batch_size)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * config.epochs
        self.warmup_steps = max(1, int(round(config.warmup * self.total_steps)))
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=self.lr,
                                           betas=(0.9, 0.98), eps=1e-6, foreach=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(self.total_steps, self.warmup_steps))
        if self.keep_initial:  # the untrained weights, for exporting the base beside the result
            self._initial_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def config_hash(self) -> str:
        material = {**asdict(self.config), "catalog": self.catalog.checksum, "split": self.split_digest}
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {name for name, p in self.model.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                if k in names or self.config.method == "finetune"}

    def _save(self, state: dict[str, Any]) -> None:
        path = self.work / CHECKPOINT
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def _resume(self) -> dict[str, Any] | None:
        path = self.work / CHECKPOINT
        if not path.is_file():
            return None
        if self.fresh:
            path.unlink()
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("config_hash") != self.config_hash():
            raise ConfigError(f"{self.work} holds the checkpoint of a different run (other arguments or catalog); "
                              "pass --fresh to start over or another --work directory")
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return state

    def run(self) -> dict[str, Any]:
        """Train and return the run's record (without exporting)."""
        config = self.config
        self.prepare()
        self.setup_model()
        state = self._resume()
        if state is None:
            self._emit(kind="phase", message="held-out figures of the base model")
            before = self.evaluate(full=True)
            state = {"config_hash": self.config_hash(), "epoch": 0, "step": 0, "before": before, "history": [],
                     "best": None, "bad_epochs": 0, "finished": False, "seconds": 0.0}
        else:
            self._emit(kind="phase", message=f"resuming after epoch {state['epoch']}")
        resumed_seconds = state["seconds"]
        mark = last_save = time.perf_counter()
        self.train_seconds, self.train_images = 0.0, 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step = state["step"]
        for epoch in range(state["epoch"] + 1, config.epochs + 1):
            if state["finished"]:
                break
            self.model.train()
            epoch_start = time.perf_counter()
            rng = np.random.default_rng([config.seed, epoch])
            order = rng.permutation(self.train_rows)
            losses = []
            for b in range(self.steps_per_epoch):
                rows = [int(r) for r in order[b * config.batch_size:(b + 1) * config.batch_size]]
                sampled = [str(rng.choice(sorted(self.captions[r].texts))) for r in rows]
                mask = positives([self.captions[r].texts for r in rows], sampled)
                images = self.image_features(rows)
                # Each distinct caption runs through the text tower once (a batch of type-only captions
                # holds a few dozen distinct texts); the rows share its embedding and its gradient.
                distinct = list(dict.fromkeys(sampled))
                where = torch.tensor([distinct.index(text) for text in sampled], device=self.device)
                texts = self.text_features(distinct)[where]
                loss = contrastive_loss(images, texts, logit_scale(self.model), mask)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable_parameters(self.model), 1.0)
                self.optimizer.step()
                self.scheduler.step()
                step += 1
                losses.append(loss.item())
                self._emit(kind="step", epoch=epoch, epochs=config.epochs, step=step, steps=self.total_steps,
                           loss=losses[-1])
            self.train_seconds += time.perf_counter() - epoch_start
            self.train_images += self.steps_per_epoch * config.batch_size
            figures = self.evaluate(full=False)
            score = (figures[f"caption_r_at_{EVAL_K}"], figures["caption_mrr"])
            record = {"epoch": epoch, "loss": float(np.mean(losses)), **figures}
            state["history"].append(record)
            best = state["best"]
            if best is None or score > tuple(best["score"]):
                state["best"] = {"epoch": epoch, "score": list(score), "model": self._trainable_state()}
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            state.update(epoch=epoch, step=step, model=self._trainable_state(),
                         optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         seconds=resumed_seconds + time.perf_counter() - mark)
            if state["bad_epochs"] >= config.patience:
                state["finished"] = True
                state["stopped_early"] = True
            if time.perf_counter() - last_save >= CHECKPOINT_EVERY_SECONDS or epoch == config.epochs:
                self._save(state)
                last_save = time.perf_counter()
            self._emit(kind="epoch", epoch=epoch, epochs=config.epochs, step=step, steps=self.total_steps,
                       loss=record["loss"], held_out=figures)
            if state["finished"]:
                break
        state["finished"] = True
        self.model.load_state_dict(state["best"]["model"], strict=False)
        self._emit(kind="phase", message=f"held-out figures of the best epoch ({state['best']['epoch']})")
        after = self.evaluate(full=True)
        state["seconds"] = resumed_seconds + time.perf_counter() - mark
        self._save({k: v for k, v in state.items()})
        self.state = state
        return {"before": state["before"], "after": after, "history": state["history"],
                "best_epoch": state["best"]["epoch"], "stopped_early": bool(state.get("stopped_early")),
                "seconds_training": round(state["seconds"], 1), "throughput": self.throughput()}

    def throughput(self) -> dict[str, Any]:
        """Training images (or, for lit, captions) per second of this process's steps, and peak GPU memory."""
        out: dict[str, Any] = {
            "products_per_second": round(self.train_images / self.train_seconds, 1) if self.train_seconds else None,
            "device": self.device.type,
            "threads": torch.get_num_threads(),
        }
        if self.device.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(self.device)
            out["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        return out

    # the record and the bundle ---------------------------------------------------------------------

    def training_record(self, result: dict[str, Any]) -> TrainingRecord:
        config = self.config
        catalog_name = Path(self.catalog.source).name
        if catalog_name in ("catalog.csv", "images.csv"):
            catalog_name = Path(self.catalog.source).parent.name
        n_captions = sum(len(self.captions[r].by_template) for r in self.train_rows)
        trained_on = (f"{n_captions} captions of {len(self.train_rows)} products of {catalog_name} "
                      f"({len(self.held_rows)} held out)")
        if self.base.kind == "efficientnet":
            description = ("LiT: pretrained EfficientNet-Lite0 image tower (ImageNet weights, locked) + text tower "
                           f"trained from scratch on {trained_on}")
        elif config.method == "lit":
            description = f"LiT: {self.base.info['id']} image tower (locked) + text tower trained on {trained_on}"
        else:
            description = f"{self.base.info['id']} fine-tuned (all weights) on {trained_on}"
        if self.base.tiny:
            description += RANDOM_BASE_NOTE  # ModelManifest.description adds it to a record without it too
        hyper = {**asdict(config), "lr": self.lr, "ignore": list(config.ignore), "total_steps": self.total_steps,
                 "warmup_steps": self.warmup_steps, "steps_per_epoch": self.steps_per_epoch,
                 "optimizer": "AdamW(betas=(0.9, 0.98), eps=1e-6), no decay on gains, biases, temperature",
                 "schedule": "linear warm-up, cosine decay to 0", "loss": "symmetric InfoNCE, shared captions "
                 "are positives", "early_stopping": f"held-out caption R@{EVAL_K} (MRR ties), patience "
                 f"{config.patience}", "device": self.device.type,
                 "precision": str(self.amp).replace("torch.", "") if self.amp else "float32",
                 "text_tower": "from scratch" if self.base.kind == "efficientnet" else "from the base",
                 "temperature": round(logit_scale(self.model).item(), 3)}
        return TrainingRecord(
            method=config.method, description=description, base=self.base.info,
            catalog={"source": self.catalog.source, "name": catalog_name, "checksum": self.catalog.checksum,
                     "products": len(self.products), "train": len(self.train_rows), "held_out": len(self.held_rows),
                     "held_out_fraction": config.held_out, "split_seed": config.seed,
                     "held_out_digest": self.split_digest, "ignored_categories": list(config.ignore),
                     "skipped": self.catalog.skipped},
            hyperparameters=hyper,
            captions=captions_mod.describe([self.captions[r] for r in self.train_rows],
                                           [self.products[r] for r in self.train_rows]),
            held_out={"k": EVAL_K, "before": result["before"], "after": result["after"],
                      "best_epoch": result["best_epoch"], "epochs_run": len(result["history"]),
                      "stopped_early": result["stopped_early"], "history": result["history"]},
            seconds_training=result["seconds_training"],
            throughput=result["throughput"],
            trained=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def source(self) -> ModelSource:
        return ModelSource(id=f"{self.base.info['id']}+{self.config.method}",
                           revision=f"catalog-{self.catalog.checksum[:12]}", tiny=self.base.tiny)

    def export(self, out_dir: Path, record: TrainingRecord) -> Path:
        """The trained model as a model bundle, through the exporter's path."""
        from model_export.export import write_bundle

        if self.base.kind == "efficientnet":
            from model_export.train.graphs import export_dual_encoder_graphs

            model = self.model.to("cpu").eval()
            return write_bundle(model, self.base.tokenizer, EFFICIENTNET_PREPROCESS, out_dir,
                                export_graphs=export_dual_encoder_graphs, image_size=EFFICIENTNET_PREPROCESS.crop_height,
                                dim=EFFICIENTNET_DIM, context_length=77, source=self.source(),
                                quantize=self.config.quantize, training=record)
        return export_clip(self.model, self.base, out_dir, source=self.source(), training=record,
                           quantize=self.config.quantize)

    def export_base(self, out_dir: Path) -> str:
        """Export the untrained base (same path) and return its fingerprint; CLIP bases only."""
        if self.base.kind != "clip":
            raise ConfigError(f"--base-out needs a CLIP base: {EFFICIENTNET} has no text tower before training")
        base_model = copy.deepcopy(self.model).to("cpu")
        base_model.load_state_dict(self._initial_state, strict=False)
        source = ModelSource(id=self.base.info["id"], revision=self.base.info["revision"], tiny=self.base.tiny)
        export_clip(base_model, self.base, out_dir, source=source, training=None, quantize=self.config.quantize)
        return load_manifest(out_dir, verify=False).fingerprint


def export_clip(model: Any, base: Base, out_dir: Path, *, source: ModelSource, training: TrainingRecord | None,
                quantize: str | None) -> Path:
    """Save a CLIPModel as a checkpoint and export it with export_checkpoint."""
    from model_export.export import export_checkpoint
    from model_export.hub import Checkpoint

    with tempfile.TemporaryDirectory(prefix="moodboard-trained-") as tmp:
        model.to("cpu").eval().save_pretrained(tmp)
        base.tokenizer.save_pretrained(tmp)
        base.processor.save_pretrained(tmp)
        return export_checkpoint(Checkpoint(path=Path(tmp), source_id=source.id, revision=source.revision),
                                 Path(out_dir), quantize=quantize, source=source, training=training)


def train(catalog: Path, out_dir: Path, config: TrainConfig, *, work: Path | None = None,
          base_out: Path | None = None, progress: Progress | None = None, fresh: bool = False) -> Path:
    """Train on a catalog and write the model bundle to out_dir (and the untrained base to base_out).

    The work dir (default `<out_dir>.train`) keeps the checkpoint, the locked tower's image features
    and the tokenizer files; running the same command again resumes from it.
    """
    from model_export.export import _check_out_dir, _check_quantize

    out_dir = Path(out_dir)
    _check_quantize(config.quantize)
    _check_out_dir(out_dir)
    if base_out is not None:
        _check_out_dir(Path(base_out))
    work = Path(work) if work is not None else out_dir.with_name(out_dir.name + ".train")
    trainer = Trainer(catalog, config, work, progress=progress, fresh=fresh, keep_initial=base_out is not None)
    result = trainer.run()
    base_fingerprint = None
    if base_out is not None:
        trainer._emit(kind="phase", message=f"exporting the base model to {base_out}")
        base_fingerprint = trainer.export_base(Path(base_out))
    if base_fingerprint is not None:
        trainer.base.info["fingerprint"] = base_fingerprint
    record = trainer.training_record(result)
    trainer._emit(kind="phase", message=f"exporting the trained model to {out_dir}")
    trainer.export(out_dir, record)
    if trainer.base.kind == "efficientnet":
        trainer._emit(kind="phase", message="measuring the near-copy threshold of the image embeddings")
        record_near_copy(out_dir, trainer.products, seed=config.seed)
    return out_dir


def record_near_copy(bundle_dir: Path, products: Sequence[Product], *, seed: int) -> float:
    """Measure the bundle's near-copy threshold with the runtime's embedder on a seeded sample of the
    products' pictures (model_export.train.near_copy) and write it into its manifest, with how it
    was measured in the training record. Returns the threshold."""
    from moodboard.model_bundle import write_manifest

    from model_export.train.near_copy import measure_bundle

    measure = measure_bundle(bundle_dir, {product.id: Path(product.image) for product in products}, seed=seed)
    manifest = load_manifest(bundle_dir)
    assert manifest.training is not None
    training = TrainingRecord.model_validate({**manifest.training.model_dump(), "near_copy": measure.record()})
    write_manifest(manifest.model_copy(update={"training": training, "near_copy_threshold": measure.threshold}),
                   bundle_dir)
    logger.info("near-copy threshold of %s: %.3f (%s)", bundle_dir, measure.threshold, measure.record())
    return measure.threshold
