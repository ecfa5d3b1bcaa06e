"""The command line, fuzzed. Hypothesis draws overrides of the schema's numeric and string keys
from bad values (negative, zero, huge, NaN, inf, empty, non-numeric), one or two at a time, for
several crossings of pretext, downstream, data and backbone. Each command line is either refused
in one line naming a drawn key, or accepted with every drawn key in the range its schema declares.
Hundreds run in-process, through Hydra's own override parser and merge; a handful run end to end
through the real CLI, where an accepted one must also finish."""

import copy
import dataclasses
import math
import subprocess
from pathlib import Path

import pytest
from conftest import SUMMARY, TINY, run_cli
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import example, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from ssl_lab.cli import CONF_DIR
from ssl_lab.config_check import check_config, config_error
from ssl_lab.errors import SslLabError
from ssl_lab.schema import schema_fields, value_ok

CROSSINGS = [
    [],  # rotation -> linear_probe, small_cnn on digits
    ["pretext=jigsaw", "downstream=finetune"],
    ["pretext=inpainting", "downstream=segmentation"],
    ["pretext=supervised", "downstream=fewshot"],
    ["pretext=none", "downstream=knn", "backbone=resnet18"],
    ["pretext=none", "downstream=generative_finetune", "trainer=ddp_cpu"],
    ["data=reviews_zh", "pretext=mlm", "downstream=prompt"],
    ["data=reviews_zh", "pretext=clm", "downstream=kmeans"],
]
FUZZED_TYPES = (int, float, str, bool, list[int], list[str])

NEGATIVE = st.integers(-(10**9), -1).map(str)
HUGE = st.integers(10**6, 10**40).map(str)
FLOATS = st.floats(width=64).map(repr)  # NaN and infinities included
SPECIAL = st.sampled_from(["0", "0.0", "-0.0", "nan", "inf", "-inf", "1e300", "-1e-300", "1e-320"])
TEXT = st.sampled_from(
    ["", "''", "' '", "abc", "1e", "--1", "0x1F", "true", "null", "???", "é", "a b", "[]", "[-1]"]
    + ["[abc]", "[1,1e9]", "{}", "{a: 1}", "${seed}", "${nonexistent}", "${data.name}"]
)
BAD_VALUES = st.one_of(NEGATIVE, HUGE, FLOATS, SPECIAL, TEXT)


def fuzzed_keys(cfg: DictConfig) -> list[tuple[str, dataclasses.Field]]:
    """The schema's numeric and string keys of ``cfg``; not ``_target_`` (which class to build:
    it is imported when it is built)."""
    return [
        (key, spec)
        for key, spec in schema_fields(cfg)
        if spec.type in FUZZED_TYPES or _optional_of(spec.type) in FUZZED_TYPES
        if spec.name != "_target_"
    ]


def _optional_of(kind) -> object:
    args = [a for a in getattr(kind, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else None


@pytest.fixture(scope="module")
def crossings(tmp_path_factory) -> list[tuple[DictConfig, list]]:
    run_dir = tmp_path_factory.mktemp("fuzz") / "run"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        configs = [
            compose(config_name="config", overrides=[*c, f"paths.run_dir={run_dir}"])
            for c in CROSSINGS
        ]
    return [(cfg, fuzzed_keys(cfg)) for cfg in configs]


def apply(base: DictConfig, overrides: list[str]) -> tuple[DictConfig, str | None]:
    """``base`` with command-line ``overrides``, as Hydra merges them, then checked: the config,
    and the one-line refusal (None: accepted)."""
    cfg = copy.deepcopy(base)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)  # what compose() does with them
        check_config(cfg)
    except SslLabError as err:
        return cfg, str(err)
    except Exception as err:
        refused = config_error(err)
        if refused is None:
            raise
        return cfg, str(refused)
    return cfg, None


def never_valid(spec: dataclasses.Field, raw: str) -> bool:
    """Values that no numeric field accepts, whatever its range: no number at all (text, empty,
    a list), NaN or infinite. (null may be allowed, and an interpolation is another value.)"""
    kind = _optional_of(spec.type) or spec.type
    if kind not in (int, float) or raw == "null" or raw.startswith("${"):
        return False
    try:
        return not math.isfinite(float(raw))
    except ValueError:
        return True


TRIED: dict[str, set] = {
    key: set() for key in ("in-process", "refused", "cli", "cli refused", "finished", "stopped")
}


@st.composite
def command_lines(draw, crossings: list) -> tuple[int, list[tuple[str, dataclasses.Field, str]]]:
    which = draw(st.integers(0, len(crossings) - 1))
    keys = crossings[which][1]
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique_by=lambda k: k[0]))
    return which, [(key, spec, draw(BAD_VALUES)) for key, spec in chosen]


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    if TRIED["in-process"]:
        SUMMARY.append(
            f"fuzz: {len(TRIED['in-process'])} distinct bad command lines tried in-process, "
            f"{len(TRIED['refused'])} refused in one line, the rest in range"
        )
    if TRIED["cli"]:
        SUMMARY.append(
            f"fuzz: {len(TRIED['cli'])} distinct bad command lines through the real CLI, "
            f"{len(TRIED['cli refused'])} refused in one line, {len(TRIED['finished'])} "
            f"finished, {len(TRIED['stopped'])} stopped at a non-finite loss"
        )


def test_bad_values_are_refused_in_one_line_or_lie_in_their_range(crossings):
    @settings(max_examples=500, deadline=None, derandomize=True, database=None)
    @given(command_lines(crossings))
    def check(drawn):
        which, draws = drawn
        base, _ = crossings[which]
        overrides = [f"{key}={raw}" for key, _, raw in draws]
        cfg, refused = apply(base, overrides)
        TRIED["in-process"].add((which, *overrides))
        if refused is not None:
            TRIED["refused"].add((which, *overrides))
            assert "\n" not in refused and refused.strip() == refused, refused
            assert any(key in refused for key, _, _ in draws), (overrides, refused)
            return
        for key, spec, raw in draws:
            assert not never_valid(spec, raw), f"accepted {key}={raw}"
            assert value_ok(spec, OmegaConf.select(cfg, key), cfg), f"{key}={raw} out of range"

    check()


# End to end: keys whose accepted values cannot make a tiny run long or large (epochs, sizes and
# widths can: a huge one is a long run, not a bad input).
E2E_KEYS = [
    "pretext.lr",
    "downstream.lr",
    "data.batch_size",
    "data.labels_per_class",
    "data.label_fraction",
    "data.val_fraction",
    "monitor.k",
    "monitor.temperature",
    "seed",
    "nonfinite",
]
E2E_TINY = [*TINY, "pretext.epochs=1", "downstream.epochs=1", "+trainer.limit_train_batches=2"]


def outputs_besides_hydra(outputs: Path) -> list[Path]:
    return [p for p in outputs.rglob("*") if p.is_file() and ".hydra" not in p.parts]


# Edge values that are in range for some of these keys, so that some command lines run.
E2E_VALUES = st.one_of(BAD_VALUES, st.sampled_from(["1", "1e-9", "0.5", "1e30", "1000000"]))


@pytest.mark.slow
def test_bad_values_through_the_cli_are_refused_in_one_line_or_the_run_finishes(tmp_path_factory):
    @settings(max_examples=6, deadline=None, derandomize=True, database=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from(E2E_KEYS), E2E_VALUES),
            min_size=1,
            max_size=2,
            unique_by=lambda pair: pair[0],
        )
    )
    @example([("data.batch_size", "1000000")])  # accepted: one batch of everything
    @example([("pretext.lr", "1e30")])  # accepted, and the loss turns NaN at once
    def check(draws):
        overrides = [f"{key}={value}" for key, value in draws]
        TRIED["cli"].add(tuple(overrides))
        tmp = tmp_path_factory.mktemp("cli")
        try:
            result = run_cli(tmp, *E2E_TINY, *overrides, timeout=300)  # the bound on a tiny run
        except subprocess.TimeoutExpired:
            pytest.fail(f"ran past 300 s: {overrides}")
        assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
        if result.returncode == 0:
            assert list(tmp.rglob("metrics.json")), overrides
            TRIED["finished"].add(tuple(overrides))
            return
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, (overrides, result.stderr[-3000:])
        assert lines[0].startswith("ssl-lab: error: "), lines
        if "non-finite" in lines[0]:  # it ran, and nonfinite=stop ended it at the first NaN
            assert not list(tmp.rglob("metrics.json"))
            TRIED["stopped"].add(tuple(overrides))
            return
        assert any(key in lines[0] for key, _ in draws), (overrides, lines[0])
        assert outputs_besides_hydra(tmp / "outputs") == [], overrides
        TRIED["cli refused"].add(tuple(overrides))

    check()
