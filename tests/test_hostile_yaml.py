"""Hostile recipes and experiment files: not UTF-8, alias bombs, deep nesting, ambiguous numbers,
huge values in messages. Each is one PTMError naming the file, in bounded time; fuzzing finds no
other exception. Quoted numbers give the same recipe key as plain ones."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ptm_core.errors import PTMError, RecipeError
from ptm_core.merge.recipe import Recipe
from ptm_core.store.experiment import Experiment, ExperimentError
from ptm_core.testing.store import EXPERIMENT_YAML, write_experiment

RECIPE = """merge_method: task_arithmetic
base_model: pre
models:
  - model: general
    parameters: {{weight: 1.0}}
  - model: skill
    parameters: {{weight: {w}}}
"""
# 9 levels of 9 aliases: ~600 bytes that expand to 9**9 (387 million) strings
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def recipe_error(text: str | bytes, tmp_path, *words: str) -> str:
    f = tmp_path / "r.yml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    t0 = time.perf_counter()
    with pytest.raises(RecipeError) as e:
        Recipe.from_file(f)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert str(f) in msg and len(msg) < 1000, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_recipe_not_utf8(tmp_path):
    recipe_error(RECIPE.format(w=0.5).encode().replace(b"skill", b"sk\xffill"), tmp_path, "UTF-8")


def test_recipe_alias_bomb_is_refused_fast(tmp_path):
    assert len(BOMB) < 700
    recipe_error(BOMB, tmp_path, "alias")


def test_recipe_merge_key_needs_an_alias_and_is_refused(tmp_path):
    text = "defaults: &d {weight: 1.0}\n" + RECIPE.format(w=0.5).replace("{weight: 0.5}", "{<<: *d}")
    recipe_error(text, tmp_path, "alias")


def test_recipe_deep_nesting(tmp_path):
    recipe_error("merge_method: " + "[" * 100_000, tmp_path, "nesting")


def test_huge_value_is_not_echoed_in_full(tmp_path):
    huge = "x" * 100_000
    msg = recipe_error(RECIPE.format(w=0.5) + f"dtype: {huge}\n", tmp_path, "dtype")
    assert huge not in msg


@pytest.mark.parametrize("w", ["0.5", "'0.5'", '"0.5"', "5e-1", "0.50"])
def test_quoted_numbers_are_numbers(w):
    assert Recipe.from_yaml(RECIPE.format(w=w)).key() == Recipe.from_yaml(RECIPE.format(w=0.5)).key()
    assert Recipe.from_yaml(RECIPE.format(w=w)).models[1].parameters["weight"] == 0.5


def test_quoted_booleans_and_lists_are_normalised_too():
    ties = RECIPE.replace("task_arithmetic", "ties").replace("{weight: 1.0}", "{weight: 1.0, density: 0.5}")
    a = Recipe.from_yaml(ties.format(w="[0, '0.5', 1]") + "parameters: {normalize: 'true'}\n")
    b = Recipe.from_yaml(ties.format(w="[0, 0.5, 1]") + "parameters: {normalize: true}\n")
    assert a.key() == b.key()


@pytest.mark.parametrize("w", ["1_0", "'1_0'", "1:30", "010", "' 0.5'", "0x_1"])
def test_numbers_yaml_versions_disagree_on_are_refused(w):
    with pytest.raises(RecipeError) as e:
        Recipe.from_yaml(RECIPE.format(w=w), source="r.yml")
    assert "r.yml" in str(e.value) and ("number" in str(e.value))


def test_plain_numbers_still_read():
    for w, v in (("10", 10), ("-2", -2), ("0.25", 0.25), ("1.0e+1", 10.0), ("0x10", 16)):
        assert Recipe.from_yaml(RECIPE.format(w=w)).models[1].parameters["weight"] == v


# --- experiment files --------------------------------------------------------------------------
def experiment_error(tmp_path, text: str | bytes, *words: str) -> str:
    path = write_experiment(tmp_path, name="t", text="")
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    t0 = time.perf_counter()
    with pytest.raises(ExperimentError) as e:
        Experiment.load(path)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "t.yml" in msg and len(msg) < 3000, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_experiment_alias_bomb_is_refused_fast(tmp_path):
    experiment_error(tmp_path, EXPERIMENT_YAML.format(name="t") + "extra:\n  " + BOMB.replace("\n", "\n  "),
                     "alias")


def test_experiment_alias_bomb_in_a_value_is_not_echoed(tmp_path):
    text = BOMB + EXPERIMENT_YAML.format(name="t").replace("description:", "description: *i\nx:", 1)
    experiment_error(tmp_path, text, "alias")


def test_experiment_not_utf8(tmp_path):
    experiment_error(tmp_path, EXPERIMENT_YAML.format(name="t").encode() + b"# \xc3\x28\n", "UTF-8")


def test_experiment_huge_value_is_truncated(tmp_path):
    huge = "y" * 50_000
    text = EXPERIMENT_YAML.format(name="t").replace("size: 1000", f"size: {huge}")
    msg = experiment_error(tmp_path, text, "general.size")
    assert huge not in msg


def test_experiment_ambiguous_number(tmp_path):
    experiment_error(tmp_path, EXPERIMENT_YAML.format(name="t").replace("size: 1000", "size: 1_000"),
                     "ambiguous number")


# --- fuzzing: any bytes give a result or a PTMError ---------------------------------------------
_ODD = ["2001-13-45", "2001-01-01", "!!binary aGk=", "~", "1_0", ".inf", ".nan", "-.inf", "true",
        "'true'", "[]", "{}", "[1, [2]]", "{value: 1}", "[{filter: x, value: '0.5'}]",
        "[{filter: [1], value: 2}]", "1e400", "99999999999999999999999999", "!!set {a}",
        "!!omap [a: 1]", "!!timestamp 2001-01-01", "!!float 1", "!!int '0x'", "'0.5'", "-0", "0"]
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow])  # examples: conftest profile
_yamlish = st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#,?<=%@`\n 0123456789._")),
            max_size=300).map(str.encode),
    # well-formed YAML with odd values where the parsers expect numbers, names and mappings
    st.tuples(st.sampled_from(["task_arithmetic", "ties", "linear", "dare_ties", "x", "[1]"]),
              st.lists(st.sampled_from(_ODD), min_size=4, max_size=4)).map(
        lambda c: (f"merge_method: {c[0]}\nbase_model: {c[1][0]}\nmodels:\n  - model: {c[1][1]}\n"
                   f"    parameters: {{weight: {c[1][2]}, density: {c[1][3]}}}\n"
                   f"parameters: {{normalize: {c[1][3]}, {c[1][0]}: {c[1][2]}}}\n").encode()),
    st.lists(st.sampled_from(_ODD), min_size=3, max_size=3).map(
        lambda v: EXPERIMENT_YAML.format(name="t").replace("1000", v[0]).replace("models/pre", v[1])
        .replace("fake_coding", v[2]).encode()),
    st.sampled_from([RECIPE.format(w=0.5), EXPERIMENT_YAML.format(name="t"), BOMB]).flatmap(
        lambda t: st.tuples(st.integers(0, len(t)), st.text(max_size=20)).map(
            lambda c: (t[:c[0]] + c[1] + t[c[0]:]).encode(errors="surrogatepass"))),
)


@FUZZ
@given(_yamlish)
def test_fuzz_recipe_parser(data):
    try:
        r = Recipe.from_yaml(data, source="fuzz.yml")
    except PTMError:
        return
    r.key()  # whatever parses can be hashed


@FUZZ
@given(_yamlish)
def test_fuzz_experiment_parser(data):
    try:
        e = Experiment.from_yaml(data, source="fuzz.yml")
    except PTMError:
        return
    e.content_hash()


@pytest.mark.parametrize("reader", ["ptm_core.merge.recipe:Recipe.from_file",
                                    "ptm_core.store.experiment:Experiment.load"])
def test_a_fifo_named_as_the_file_does_not_block(tmp_path, reader):
    import os
    import subprocess
    import sys
    from pathlib import Path

    fifo = tmp_path / "r.yml"
    os.mkfifo(fifo)
    module, func = reader.split(":")
    cls, meth = func.split(".")
    code = (f"from {module} import {cls}\nfrom ptm_core.errors import PTMError\n"
            f"try:\n    {cls}.{meth}({str(fifo)!r})\nexcept PTMError as e:\n    print(e)")
    # a child process, so that a reader that blocks on the FIFO fails the test instead of hanging it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert "not a regular file" in out.stdout, out.stderr
