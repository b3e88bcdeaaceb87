"""User-facing errors: one message that names the model, the tensor and the problem."""

from __future__ import annotations


class PTMError(Exception):
    """An error caused by the user's input; the CLI prints its message and exits non-zero."""


class RecipeError(PTMError):
    """The recipe is not valid YAML, names an unknown method or parameter, or has a bad value."""


class CheckpointError(PTMError):
    """An input model cannot be read: missing files, corrupt safetensors, pickles, bad dtypes."""

    def __init__(self, model: str, problem: str, tensor: str | None = None):
        where = f"model {model!r}" + (f", tensor {tensor!r}" if tensor else "")
        super().__init__(f"{where}: {problem}")
        self.model, self.tensor, self.problem = model, tensor, problem


class MergeError(PTMError):
    """The inputs do not fit together (shapes, missing tensors) or the result is not finite."""
