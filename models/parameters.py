"""Parameter counting, and the constructor-argument checks every model shares.

The checks live here rather than in each model so that a bad value coming from the config
gets the same wording whichever model reads it (``model.<name>=<value> ...; use ...``).
"""

from __future__ import annotations

import math

from torch import nn

# Values interpolated from the data config: a bad one must be fixed there, not in model/.
_FROM_DATA = frozenset({"in_channels", "num_classes", "image_size"})


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Counts the scalar parameters of a model.

    Parameters shared between submodules are counted once (``Module.parameters`` deduplicates).

    Args:
        model: Any ``torch.nn.Module``.
        trainable_only: Count only parameters with ``requires_grad=True``; ``False`` counts
            frozen ones too. Buffers (e.g. BatchNorm running statistics) are never counted.

    Returns:
        The number of scalar parameters.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.
        ValueError: If the model still has uninitialised lazy parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"count_parameters expects a torch.nn.Module, got {type(model).__name__}; "
            "pass the model itself, not its state_dict or parameters()"
        )
    total = 0
    for name, param in model.named_parameters():
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"parameter {name!r} is an uninitialised lazy parameter, so it has no size yet; "
                "run one forward pass before counting"
            )
        if param.requires_grad or not trainable_only:
            total += param.numel()
    return total


def _fix(name: str, rule: str) -> str:
    if name in _FROM_DATA:
        return f"use data.{name}{rule} in the data config (model.{name} is interpolated from it)"
    return f"use model.{name}{rule}"


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Returns ``value`` if it is an int >= ``minimum``; raises TypeError/ValueError otherwise."""
    # bool is an int subclass, but `depth: true` in YAML is a typo, never a depth of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        # YAML `2.0` or `"2"` is the usual cause: suggest the integer that was meant.
        example = int(value) if isinstance(value, float) and value.is_integer() else minimum
        raise TypeError(
            f"model.{name}={value!r} must be an integer (no decimal point, no quotes), got "
            f"{type(value).__name__}; {_fix(name, f'={max(example, minimum)}')}"
        )
    if value < minimum:
        raise ValueError(
            f"model.{name}={value} is out of range: it must be >= {minimum}; "
            f"{_fix(name, f'>={minimum}')}"
        )
    return value


def check_positive_float(name: str, value: object) -> float:
    """Returns ``value`` as a float if it is a finite number > 0; raises otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"model.{name}={value!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"model.{name}={value} is out of range: it must be a finite number > 0; "
            f"use e.g. model.{name}=2.0"
        )
    return float(value)


def check_dropout(value: object, name: str = "dropout") -> float:
    """Returns ``value`` as a float if it is a probability in [0, 1); raises otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"model.{name}={value!r} must be a number, got {type(value).__name__}")
    # 1.0 would zero every activation and make the model output a constant.
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"model.{name}={value} is out of range: it must be in [0, 1); "
            f"use e.g. model.{name}=0.25, or 0 to disable dropout"
        )
    return float(value)


def check_io(*, in_channels: object, num_classes: object, image_size: object) -> None:
    """Checks the three arguments every model takes from the data config."""
    check_int("in_channels", in_channels, minimum=1)
    # One class gives a constant cross-entropy of zero: always a configuration mistake.
    check_int("num_classes", num_classes, minimum=2)
    check_int("image_size", image_size, minimum=1)
