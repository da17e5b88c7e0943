"""Mixed-precision uint8: which tensors a uint8 TF.js variant keeps in float16, chosen by
measurement.

The TF.js weights manifest gives every tensor its own dtype and quantization, so a "uint8"
variant may store most tensors as uint8 and a few as float16. Which few matters: a fine-tuned
backbone (issue 16) loses nothing on the 250 tensors it kept frozen (already on a uint8 grid,
see :func:`~browserml.tfjs.weights.source_grid`) and everything phase 2 learned on the 12 it
moved by a fraction of a uint8 step. A size rule cannot tell them apart; measuring can.

:func:`choose_precision` measures in Keras by weight swap (the weights put back into the model
exactly as TF.js dequantizes them), on the convert's own selection images (calibration images,
else generated inputs; never the test set the variant's accuracy is reported on):

1. plain uint8 first: when its top-1 agreement with float32 meets the target, it is kept and
   nothing else is measured (the common case costs two predictions);
2. else every tensor whose uint8 form differs from float32 is quantized alone on a probe
   subset and ranked by the disagreements and the mean output change it causes;
3. the fewest most-sensitive tensors are kept in float16 (binary search over the ranking's
   prefix) until the agreement on the selection images meets the target.

The browser check that follows (``runtime_check``) gives the variant's reported figures as for
any other variant; this module only chooses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .layers_model import keras_weights, model_variables
from .weights import GRID_TOLERANCE, decode, encode

KEPT_DTYPE = "float16"


@dataclass
class Sensitivity:
    """What quantizing one tensor alone to uint8 does on the probe images."""

    name: str
    size: int
    disagreements: int
    mean_change: float


@dataclass
class PrecisionPlan:
    """The outcome: per-tensor dtype overrides for the uint8 variant and the measurements that
    chose them. ``kept`` is empty when plain uint8 met the target."""

    samples: int
    target: float
    plain_agreement: float
    agreement: float
    tensors: int
    lossy: int
    kept: list[Sensitivity]
    met: bool

    @property
    def dtypes(self) -> dict[str, str]:
        """``{tensor name: dtype}`` for the tensors kept out of uint8."""
        return {item.name: KEPT_DTYPE for item in self.kept}


def uint8_values(value: np.ndarray) -> np.ndarray:
    """Return ``value`` as TF.js will compute with it after a uint8 round trip."""
    encoded = encode("w", value, "uint8")
    return decode(encoded.spec, encoded.data).reshape(value.shape)


def float16_values(value: np.ndarray) -> np.ndarray:
    """Return ``value`` after the round trip the kept tensors take."""
    encoded = encode("w", value, KEPT_DTYPE)
    return decode(encoded.spec, encoded.data).reshape(value.shape)


def lossless(value: np.ndarray, q: np.ndarray) -> bool:
    """True when the uint8 round trip moved no value by more than float32 rounding of the
    tensor's own grid (``GRID_TOLERANCE`` of a step): such a tensor cannot be the cause of a
    loss, so it is not ranked."""
    step = (float(value.max()) - float(value.min())) / 255
    return float(np.abs(q - value).max()) <= step * GRID_TOLERANCE


def choose_precision(model, inputs: np.ndarray, target: float, probe_samples: int,
                     advance: Callable[[str], None] | None = None) -> PrecisionPlan:
    """Given the TF.js-ready Keras model, selection images and the top-1 agreement with float32
    the uint8 variant must reach (``1 - budget_pp / 100``), return the :class:`PrecisionPlan`.

    The model's weights are restored before returning. ``advance`` is called with a status line
    after each prediction (for a progress bar)."""
    named = keras_weights(model)
    variables = dict(zip((name for name, _ in named), model_variables(model), strict=True))
    floats = {name: np.asarray(value, np.float32) for name, value in named}
    quantized = {name: uint8_values(value) for name, value in floats.items() if value.size}
    lossy = [name for name, q in quantized.items() if not lossless(floats[name], q)]
    inputs = inputs.astype(np.float32)
    step = advance or (lambda status: None)

    def outputs(on: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(on, batch_size=32, verbose=0), np.float32)

    def set_weights(uint8: set[str], half: set[str] = frozenset()) -> None:
        for name, variable in variables.items():
            value = floats[name]
            if name in half:
                value = float16_values(value)
            elif name in uint8 and name in quantized:
                value = quantized[name]
            variable.assign(value.reshape(variable.shape))

    try:
        reference = outputs(inputs)
        top1 = reference.argmax(1)
        set_weights(set(quantized))
        plain = float((outputs(inputs).argmax(1) == top1).mean())
        step("plain uint8")
        plan = PrecisionPlan(samples=len(inputs), target=target, plain_agreement=plain,
                             agreement=plain, tensors=len(floats), lossy=len(lossy), kept=[],
                             met=plain >= target)
        if plan.met or not lossy:
            return plan
        ranking = rank_tensors(lossy, floats, quantized, variables, inputs[:probe_samples],
                               reference[:probe_samples], outputs, step)
        return keep_fewest(plan, ranking, set(quantized), inputs, top1, outputs, set_weights,
                           step)
    finally:
        for name, variable in variables.items():
            variable.assign(floats[name].reshape(variable.shape))


def rank_tensors(lossy: list[str], floats: dict, quantized: dict, variables: dict,
                 probe: np.ndarray, reference: np.ndarray, outputs, step) -> list[Sensitivity]:
    """Quantize each lossy tensor alone (all others float32) on the probe images; return them
    most sensitive first (most top-1 disagreements, then largest mean output change)."""
    for name, variable in variables.items():
        variable.assign(floats[name].reshape(variable.shape))
    top1 = reference.argmax(1)
    ranked = []
    for name in lossy:
        variable = variables[name]
        variable.assign(quantized[name].reshape(variable.shape))
        got = outputs(probe)
        variable.assign(floats[name].reshape(variable.shape))
        ranked.append(Sensitivity(name=name, size=int(floats[name].size),
                                  disagreements=int((got.argmax(1) != top1).sum()),
                                  mean_change=float(np.abs(got - reference).mean())))
        step(f"rank {name}")
    ranked.sort(key=lambda s: (-s.disagreements, -s.mean_change))
    return ranked


def keep_fewest(plan: PrecisionPlan, ranking: list[Sensitivity], uint8: set[str],
                inputs: np.ndarray, top1: np.ndarray, outputs, set_weights, step
                ) -> PrecisionPlan:
    """Binary search the shortest prefix of ``ranking`` that, kept in float16 (the rest uint8),
    meets ``plan.target`` on ``inputs``. When even the whole ranking does not, ``plan`` is
    returned with every lossy tensor kept and ``met`` False (the caller then keeps plain
    uint8)."""
    measured: dict[int, float] = {}

    def agreement(count: int) -> float:
        if count not in measured:
            set_weights(uint8, {item.name for item in ranking[:count]})
            measured[count] = float((outputs(inputs).argmax(1) == top1).mean())
            step(f"keep {count} in {KEPT_DTYPE}")
        return measured[count]

    low, high = 0, len(ranking)  # agreement(low) misses (plain), agreement(high) is the best
    if agreement(high) < plan.target:
        plan.kept, plan.agreement = ranking, measured[high]
        return plan
    while high - low > 1:
        middle = (low + high) // 2
        if agreement(middle) >= plan.target:
            high = middle
        else:
            low = middle
    plan.kept, plan.agreement, plan.met = ranking[:high], measured[high], True
    return plan
