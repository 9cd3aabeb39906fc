"""What a training run will cost: memory per device, FLOPs and seconds per step, MFU.

Pure arithmetic on the model's dimensions and the run's shape (no Django, no
jax at import time), used by the training child for its `model` event, the
dry-run report and the run summary, and by the worker for the calibration it
passes in.

Memory per device (bytes), for a Qwen3-class decoder trained with AdamW:

- weights: parameters × bytes of the parameter dtype;
- gradients: trainable parameters × the same bytes (LoRA trains only its adapters);
- optimizer: trainable parameters × 8 (AdamW's two moments in float32);
  with FSDP these three are sharded: divided by the device count;
- activations kept for the backward pass (no rematerialisation), for the
  per-device batch (the batch is split over the devices):
  per token and layer the block's tensors, 7·D + 3·H·hd + 4·K·hd + 4·F values
  (residual, two norms, q/k/v before and after norm and RoPE, attention output,
  o-projection, gate, up, SiLU(gate)·up, down) in the compute dtype, plus the
  attention scores B·H·S² per layer (masked scores in the compute dtype, softmax
  in float32, its cast back);
- logits: B·S·V in float32 four times (logits, log-softmax, the one-hot
  targets and the gradient), which dominates for large vocabularies (Qwen's
  151,936: 1 GB per 512 tokens);
- a fixed runtime overhead (the Python process, XLA and Tunix on CPU; XLA's
  workspace inside the GPU allocator).

The block activations, scores and logits are then scaled by a measured
`ACTIVATION_FACTOR` per platform: XLA:CPU holds about 1.5× the tensors counted
(peak RSS over 18 tiny/small runs), XLA:GPU fuses enough away to hold about
0.62× (peak_bytes_in_use of a Qwen3-0.6B-shaped model on an H200).

A run fits when the total stays below the device memory less `HEADROOM`.

Preference runs (DPO, ORPO) put the chosen and the rejected answer of each pair
through the policy in one batch: twice the pairs, each prompt + answer long
(the child passes that batch and length). DPO adds a frozen reference model's
forward pass over the same batch (2 FLOPs per matmul parameter and token, plus
attention, no backward) and, for a full fine-tune, the reference's own copy of
the weights (under LoRA the frozen base is the reference: no copy); its
activations are not kept for a backward pass, so they add no memory beyond the
policy's. ORPO has no reference.

Seconds per step = (overhead + FLOPs / effective FLOP/s) × correction, with the
constants fitted on measured runs (bench/calibrate_estimates.py) and the
correction the median measured/estimated ratio of this installation's last
completed runs on the same platform (`calibration_factor`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 2**20
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_BYTES = 8  # AdamW: two float32 moments per trainable parameter
LOGITS_COPIES = 4
HEADROOM = 0.10
RUNTIME_OVERHEAD_MB = {"cpu": 630.0, "gpu": 256.0, "tpu": 256.0}
# Measured peak over the formula: cpu 2.1 from the Gemma 3 270M and Qwen3 0.6B shapes (the presets alone
# gave 1.5, which left those 15–30 % short: an estimate that errs must err towards "does not fit").
ACTIVATION_FACTOR = {"cpu": 2.1, "gpu": 0.62, "tpu": 1.0}


@dataclass(frozen=True, slots=True)
class StepModel:
    """seconds per step = overhead (+ lora_overhead for LoRA) + FLOPs / flops_per_s + elements · per_element.

    `elements` (activation_elements: batch × seq × layers × (hidden + MLP + attention widths))
    carries the element-wise, memory-bound work that small models spend most of a CPU step on
    and large ones hardly notice; without it one FLOP rate cannot fit both (a 0.3M-parameter
    preset runs at ~60 GFLOP/s on 2 cores, a 270M-parameter model at ~180).
    """

    overhead: float
    flops_per_s: float
    lora_overhead: float = 0.0
    per_element: float = 0.0

    def seconds(self, flops: float, lora: bool = False, elements: float = 0.0) -> float:
        return (
            self.overhead
            + (self.lora_overhead if lora else 0.0)
            + flops / self.flops_per_s
            + elements * self.per_element
        )


# Fitted on measured runs (docs/benchmarks.md). cpu: the tiny and small presets (bench/calibrate_estimates.py,
# full and LoRA at several batch × seq) and Gemma 3 270M / Qwen3 0.6B shapes (bench/bench_real_models.py)
# on 2 cores, least squares in relative error: within 0.6–1.2× of every measured step. gpu: 4 full
# runs on an H200 in float32 (tiny, small, a Qwen3-0.6B shape): 95 TFLOP/s, GPU_PEAK_FRACTION of the
# chip's peak, which scales it to other chips.
# tpu: unmeasured. This installation's completed runs correct all three
# (Run.objects.step_time_calibration).
STEP_MODELS: dict[str, StepModel] = {
    "cpu": StepModel(overhead=0.0014, flops_per_s=191e9, per_element=3.08e-8),
    "gpu": StepModel(overhead=0.0054, flops_per_s=95e12),
    "tpu": StepModel(overhead=0.01, flops_per_s=0.3 * 197e12),
}
GPU_PEAK_FRACTION = 0.19

# Dense peak FLOP/s by jax device_kind substring (first match wins): bf16, and float32 as XLA
# runs it by default on these chips (TF32 tensor cores).
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bfloat16": 989e12, "float16": 989e12, "float32": 494e12}),
    ("H100", {"bfloat16": 989e12, "float16": 989e12, "float32": 494e12}),
    ("A100", {"bfloat16": 312e12, "float16": 312e12, "float32": 156e12}),
    ("L4", {"bfloat16": 121e12, "float16": 121e12, "float32": 60e12}),
]


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The dimensions the estimates need (a Preset and Tunix's Qwen3 ModelConfig both have them)."""

    num_layers: int
    embed_dim: int
    hidden_dim: int
    num_heads: int
    head_dim: int
    num_kv_heads: int
    vocab_size: int
    tied_embedding: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> ModelShape:
        """From a Preset or any Tunix family's ModelConfig (Gemma 3 names its vocabulary `num_embed`,
        Llama 3 its tying `weight_tying`; Gemma always ties)."""
        vocab = getattr(cfg, "vocab_size", None) or cfg.num_embed
        tied = getattr(cfg, "use_tied_embedding", None)
        if tied is None:
            tied = getattr(cfg, "weight_tying", True)
        return cls(
            num_layers=cfg.num_layers,
            embed_dim=cfg.embed_dim,
            hidden_dim=cfg.hidden_dim,
            num_heads=cfg.num_heads,
            head_dim=cfg.head_dim,
            num_kv_heads=cfg.num_kv_heads,
            vocab_size=int(vocab),
            tied_embedding=bool(tied),
        )

    from_preset = from_config

    @property
    def values_per_token_layer(self) -> int:
        d, f, q, kv = self.embed_dim, self.hidden_dim, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return 7 * d + 3 * q + 4 * kv + 4 * f


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPE_BYTES)}") from None


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Bytes per device; `fits` is None when the device memory is unknown."""

    weights: float
    gradients: float
    optimizer: float
    activations: float  # the block activations and the logits together
    logits: float
    overhead: float
    devices: int
    device_memory: int | None
    reference: float = 0.0  # a DPO reference model's own weights (a full fine-tune's copy)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead + self.reference

    @property
    def total_mb(self) -> float:
        return self.total / MB

    @property
    def fits(self) -> bool | None:
        if not self.device_memory:
            return None
        return self.total <= self.device_memory * (1 - HEADROOM)

    def as_dict(self) -> dict[str, Any]:
        return {
            "weights_mb": round(self.weights / MB, 1),
            "gradients_mb": round(self.gradients / MB, 1),
            "optimizer_mb": round(self.optimizer / MB, 1),
            "activations_mb": round(self.activations / MB, 1),
            "logits_mb": round(self.logits / MB, 1),
            "overhead_mb": round(self.overhead / MB, 1),
            "reference_mb": round(self.reference / MB, 1),
            "total_mb": round(self.total / MB, 1),
            "device_count": self.devices,
            "device_memory_mb": round(self.device_memory / MB, 1) if self.device_memory else None,
            "fits": self.fits,
        }


def memory_estimate(
    shape: ModelShape,
    parameters: int,
    trainable: int,
    *,
    batch_size: int,
    seq_len: int,
    dtype: str = "float32",
    devices: int = 1,
    device_memory: int | None = None,
    platform: str = "cpu",
    sharded: bool = True,
    reference_parameters: int = 0,
) -> MemoryEstimate:
    """Memory per device of one training step (see the module docstring for the formula).

    `sharded`: weights, gradients and optimizer state are split over the devices (FSDP);
    False keeps a full copy on each (pure data parallelism).
    """
    if devices < 1:
        raise ValueError("devices must be at least 1")
    width = dtype_bytes(dtype)
    split = devices if sharded else 1
    local_batch = math.ceil(batch_size / devices)
    factor = ACTIVATION_FACTOR.get(platform, 1.0)
    # XLA on CPU computes bfloat16 matmuls in float32: its activations stay 4 bytes wide (measured).
    act = 4 if platform == "cpu" else width
    blocks = local_batch * seq_len * shape.num_layers * shape.values_per_token_layer * act * factor
    scores = local_batch * shape.num_heads * seq_len * seq_len * shape.num_layers * (2 * act + 4) * factor
    logits = local_batch * seq_len * shape.vocab_size * 4 * LOGITS_COPIES * factor
    return MemoryEstimate(
        weights=parameters * width / split,
        gradients=trainable * width / split,
        optimizer=trainable * OPTIMIZER_BYTES / split,
        activations=blocks + scores + logits,
        logits=logits,
        overhead=RUNTIME_OVERHEAD_MB.get(platform, RUNTIME_OVERHEAD_MB["gpu"]) * MB,
        devices=devices,
        device_memory=device_memory,
        reference=reference_parameters * width / split,
    )


def step_flops(
    shape: ModelShape,
    parameters: int,
    trainable: int,
    *,
    lora: bool,
    batch_size: int,
    seq_len: int,
    reference_forward: bool = False,
) -> float:
    """Model FLOPs of one training step (all devices together).

    Matmul parameters (the input embedding is a lookup unless tied to the output head)
    cost 2 FLOPs per token forward and 4 backward (input and weight gradients); a frozen
    base under LoRA skips the weight gradients (2 + 2), its adapters cost the full 6.
    Attention's two S×S products add 4·B·S²·H·hd per layer forward, twice that backward.
    `reference_forward`: a DPO reference model's forward pass over the same batch (2 per
    matmul parameter and token, attention forward only).
    """
    tokens = batch_size * seq_len
    matmul = parameters - (0 if shape.tied_embedding else shape.vocab_size * shape.embed_dim)
    forward_attention = 4 * batch_size * seq_len * seq_len * shape.num_heads * shape.head_dim * shape.num_layers
    attention = 3 * forward_attention
    reference = 0
    if reference_forward:
        # The reference is the base without adapters: its matmuls exclude LoRA's.
        reference = 2 * (matmul - (trainable if lora else 0)) * tokens + forward_attention
    if lora:
        base = matmul - trainable
        return float(4 * base * tokens + 6 * trainable * tokens + attention + reference)
    return float(6 * matmul * tokens + attention + reference)


def activation_elements(shape: ModelShape, batch_size: int, seq_len: int) -> float:
    """The element-wise work of a step: batch × seq × layers × (hidden + MLP + attention widths)."""
    width = shape.embed_dim + shape.hidden_dim + shape.num_heads * shape.head_dim
    return float(batch_size * seq_len * shape.num_layers * width)


def step_model(platform: str, device_kind: str = "", dtype: str = "float32") -> StepModel:
    """The platform's fitted model; on a GPU in PEAK_FLOPS, its rate scaled to that chip's peak."""
    model = STEP_MODELS.get(platform, STEP_MODELS["gpu"])
    peak = peak_flops(device_kind, dtype) if platform == "gpu" else None
    if peak is None:
        return model
    return StepModel(model.overhead, GPU_PEAK_FRACTION * peak, model.lora_overhead, model.per_element)


def seconds_per_step(
    flops: float,
    platform: str,
    lora: bool = False,
    correction: float = 1.0,
    device_kind: str = "",
    dtype: str = "float32",
    elements: float = 0.0,
) -> float:
    return step_model(platform, device_kind, dtype).seconds(flops, lora, elements) * correction


def fit_step_time(points: Iterable[tuple[float, bool, float]]) -> StepModel:
    """The StepModel that best fits measured (FLOPs, lora, seconds) in relative error.

    Weighted least squares on seconds = overhead + lora·lora_overhead + FLOPs·(1 / FLOP/s),
    each point weighted by 1/seconds so a 10 ms step counts as much as a 1 s one. Without
    LoRA points the LoRA term is left at 0.
    """
    rows = list(points)
    with_lora = any(lora for _, lora, _ in rows)
    width = 3 if with_lora else 2
    if len(rows) < width:
        raise ValueError(f"need at least {width} measured runs")
    if len({flops for flops, _, _ in rows}) < 2:
        raise ValueError("the measured runs do not determine the fit (all the same size)")
    # Normal equations A·c = b of the weighted problem; small enough to solve by hand.
    a = [[0.0] * width for _ in range(width)]
    b = [0.0] * width
    for flops, lora, seconds in rows:
        features = [1.0 / seconds, flops / seconds] + ([float(lora) / seconds] if with_lora else [])
        for i in range(width):
            b[i] += features[i]
            for j in range(width):
                a[i][j] += features[i] * features[j]
    overhead, per_flop, *rest = _solve(a, b)
    if per_flop <= 0:
        raise ValueError("step time does not grow with FLOPs in these runs")
    return StepModel(overhead=overhead, flops_per_s=1 / per_flop, lora_overhead=rest[0] if rest else 0.0)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a few unknowns)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-300:
            raise ValueError("the measured runs do not determine the fit (too alike)")
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """A chip's dense peak FLOP/s for `dtype`, or None for a chip not in PEAK_FLOPS."""
    for key, peaks in PEAK_FLOPS:
        if key.lower() in device_kind.lower():
            return peaks.get(dtype)
    return None


def mfu(flops: float, seconds: float, device_kind: str, dtype: str, devices: int = 1) -> float | None:
    """Model-FLOPs utilisation: model FLOPs per step / (seconds per step × peak × devices)."""
    peak = peak_flops(device_kind, dtype)
    if peak is None or seconds <= 0:
        return None
    return flops / (seconds * peak * devices)


def calibration_factor(ratios: Iterable[float]) -> tuple[float, int]:
    """(median measured/estimated ratio, runs used); (1.0, 0) with no usable run."""
    usable = [r for r in ratios if r > 0 and math.isfinite(r)]
    if not usable:
        return 1.0, 0
    return statistics.median(usable), len(usable)


def calibration_basis(runs: int) -> str:
    if runs:
        return f"calibrated on {runs} run{'s' if runs != 1 else ''} of this installation"
    return "default calibration"


def does_not_fit(estimate: dict[str, Any]) -> str:
    """The plain-words problem for a run_estimate whose `fits` is False."""
    return (
        f"Estimated {estimate['total_mb']:,.0f} MB per device does not fit in "
        f"{estimate['device_memory_mb']:,.0f} MB ({HEADROOM:.0%} kept free): activations "
        f"{estimate['activations_mb']:,.0f} MB (logits {estimate['logits_mb']:,.0f} MB), weights "
        f"{estimate['weights_mb']:,.0f} MB, gradients {estimate['gradients_mb']:,.0f} MB, optimizer "
        f"{estimate['optimizer_mb']:,.0f} MB. Lower batch_size or max_seq_length."
    )


def host_available_memory() -> int | None:
    """The memory a CPU training run can use, in bytes: the host's available memory (Linux
    MemAvailable) plus what this process already holds (by the time the estimate is made the
    child has loaded the base model, which counts in the estimate too)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
        else:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return available + int(line.split()[1]) * 1024
    except OSError:
        return None
    return available


def device_memory(device: Any) -> int | None:
    """A jax device's memory in bytes: memory_stats' bytes_limit on accelerators, the host's on CPU."""
    if device.platform == "cpu":
        return host_available_memory()
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def peak_device_memory(device: Any) -> int | None:
    """Peak bytes in use on an accelerator so far (None on CPU, where peak RSS says it)."""
    if device.platform == "cpu":
        return None
    peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
    return int(peak) if peak else None


def run_estimate(
    shape: ModelShape,
    parameters: int,
    trainable: int,
    *,
    lora: bool,
    batch_size: int,
    seq_len: int,
    dtype: str,
    devices: int,
    device_memory: int | None,
    platform: str,
    device_kind: str = "",
    calibration: dict[str, Any] | None = None,
    reference: str = "none",
) -> dict[str, Any]:
    """Everything the child reports before training: memory breakdown, FLOPs, seconds per step.

    `reference` (DPO): "copy" (a full fine-tune's separate frozen model), "shared" (LoRA's frozen
    base) or "none" (SFT, ORPO); a preference run passes batch_size = 2 × pairs and seq_len =
    prompt + answer (see the module docstring).

    `calibration` is the worker's {platform: {"factor", "runs"}} (see
    Run.objects.step_time_calibration); the uncalibrated figure is kept as
    `model_seconds_per_step` so later calibrations compare against the formula itself.
    """
    memory = memory_estimate(
        shape,
        parameters,
        trainable,
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        devices=devices,
        device_memory=device_memory,
        platform=platform,
        reference_parameters=(parameters - (trainable if lora else 0)) if reference == "copy" else 0,
    )
    flops = step_flops(
        shape,
        parameters,
        trainable,
        lora=lora,
        batch_size=batch_size,
        seq_len=seq_len,
        reference_forward=reference != "none",
    )
    entry = (calibration or {}).get(platform) or {}
    factor, runs = float(entry.get("factor") or 1.0), int(entry.get("runs") or 0)
    if runs == 0:
        factor = 1.0
    elements = activation_elements(shape, batch_size, seq_len)
    base = seconds_per_step(flops, platform, lora, device_kind=device_kind, dtype=dtype, elements=elements)
    return {
        "platform": platform,
        "device_kind": device_kind,
        "dtype": dtype,
        **memory.as_dict(),
        "estimated_memory_mb": round(memory.total_mb, 1),
        "model_flops_per_step": flops,
        "model_seconds_per_step": round(base, 4),
        "estimated_seconds_per_step": round(base * factor, 4),
        "calibration_factor": round(factor, 3),
        "calibration_basis": calibration_basis(runs),
    }


# The summary keys run_estimate adds, in the order the run page shows them.
ESTIMATE_KEYS = (
    "weights_mb",
    "gradients_mb",
    "optimizer_mb",
    "activations_mb",
    "logits_mb",
    "overhead_mb",
    "reference_mb",
    "total_mb",
    "estimated_memory_mb",
    "device_count",
    "device_memory_mb",
    "fits",
    "platform",
    "device_kind",
    "dtype",
    "model_flops_per_step",
    "model_seconds_per_step",
    "estimated_seconds_per_step",
    "calibration_factor",
    "calibration_basis",
)
