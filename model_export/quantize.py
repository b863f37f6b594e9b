"""Dynamic int8 quantisation of the exported graphs (weights int8, activations quantised at run time).

Only MatMul and Gemm are quantised: they hold almost all of CLIP's weights and compute, and this
is onnxruntime's usual recipe for transformer encoders. The patch-embedding Conv (one layer) and
the token embedding table (a Gather) stay fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

from moodboard.errors import ExportError

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ["MatMul", "Gemm"]
PRECISION = "int8"


def int8_name(fp32_name: str) -> str:
    """vision.onnx -> vision.int8.onnx"""
    stem, _, suffix = fp32_name.rpartition(".")
    return f"{stem}.{PRECISION}.{suffix}"


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Write a dynamically quantised copy of an ONNX graph; same inputs and outputs.

    The graph first goes through onnxruntime's quantisation pre-processing (shape inference and
    graph optimisation), as its documentation recommends before quantising.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path.with_name(int8_path.name + ".prep")
    try:
        # onnxruntime's symbolic shape inference gives up on the text graph ("Incomplete symbolic
        # shape inference"); ONNX's own shape inference and the graph optimisation still run.
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        quantize_dynamic(
            model_input=prepared,
            model_output=int8_path,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
        )
    except Exception as exc:  # the quantiser raises plain exceptions of many kinds
        raise ExportError(f"int8 quantisation of {Path(fp32_path).name} failed: {exc}".splitlines()[0]) from exc
    finally:
        prepared.unlink(missing_ok=True)
    logger.info("quantised %s -> %s", Path(fp32_path).name, Path(int8_path).name)
    return int8_path
