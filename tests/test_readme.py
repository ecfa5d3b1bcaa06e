"""The README's commands, as written, compose: every ``ssl-lab ...`` line of its bash blocks
(continuations joined, shell quoting applied) goes through the CLI's choice check, Hydra's
override parser and sweep expansion, composition, and the start-of-run compatibility check.
The documentation then cannot drift from the code."""

import itertools
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf

from ssl_lab.choices import CONF_DIR, config_dirs, group_choices
from ssl_lab.cli import check_choices
from ssl_lab.pipeline import check_compatible

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SKIPPED = ("ssl-lab-report", "ssl-lab-predict")  # they read runs that a test would have to make


def bash_commands(markdown: str) -> list[list[str]]:
    """The ``ssl-lab`` commands of the bash blocks, each as the shell would split it."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0].startswith("ssl-lab"):
                    commands.append(words)
    return commands


PRESET = re.compile(r"`(my_conf/\S+\.yaml)`:\s*```yaml\n(.*?)```", re.S)


def user_preset_path(root: Path) -> Path:
    """Where the README says its example of a user's own preset lives."""
    return root / PRESET.search(README)[1]


def write_user_preset(root: Path) -> None:
    """The README's example of a user's own preset, written where the README says it lives."""
    path = user_preset_path(root)
    path.parent.mkdir(parents=True)
    path.write_text(PRESET.search(README)[2], encoding="utf-8")


def assert_preset_applied(cfg: DictConfig, preset: DictConfig) -> None:
    """The preset's choices (``override /group: choice``) and values are the composed ones."""
    for entry in preset.get("defaults", []):
        for group, choice in entry.items():
            assert cfg[group.removeprefix("override /")].name == choice
    for group, values in preset.items():
        if group != "defaults":
            assert all(cfg[group][key] == value for key, value in values.items()), group


def jobs(overrides: list[str], groups: set[str]) -> list[list[str]]:
    """The jobs of a command line as Hydra's parser reads it: every combination of the swept
    config groups; each other swept value once (beside the first values of the rest)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [
        [o.input_line]
        if not o.is_sweep_override()
        else [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        for o in parsed
    ]
    crossed = [v if o.key_or_group in groups else v[:1] for o, v in zip(parsed, values)]
    runs = [list(combination) for combination in itertools.product(*crossed)]
    for i, (o, v) in enumerate(zip(parsed, values)):
        if o.key_or_group not in groups:
            runs += [[*runs[0][:i], other, *runs[0][i + 1 :]] for other in v[1:]]
    return runs


def as_compose_overrides(argv: list[str]) -> tuple[list[str], bool]:
    """(overrides, multirun) of a command line; ``--config-dir DIR`` joins the search path, as
    the CLI does."""
    overrides, multirun, rest = [], False, iter(argv)
    for arg in rest:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("--config-dir", "-cd"):
            overrides.append(f"hydra.searchpath=[file://{Path(next(rest)).resolve()}]")
        elif arg.startswith("-"):
            raise AssertionError(f"README: a flag this test does not know: {arg}")
        else:
            overrides.append(arg)
    return overrides, multirun


def compose_jobs(argv: list[str], every_job: bool) -> list[DictConfig]:
    """The composed config of the command's job (of a sweep's first job, or with ``every_job``
    of each), each checked as ``ssl-lab`` checks it before any work."""
    check_choices(argv)  # what `ssl-lab` checks before Hydra starts
    overrides, multirun = as_compose_overrides(argv)
    hydra_side = [o for o in overrides if o.startswith("hydra")]
    task = [o for o in overrides if not o.startswith("hydra")]
    runs = jobs(task, set(group_choices(config_dirs(argv)))) if multirun else [task]
    configs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in runs if every_job else runs[:1]:
            cfg = compose("config", [*hydra_side, *job], return_hydra_config=True)
            check_compatible(cfg)  # a crossing refused at start would be a broken example
            configs.append(cfg)
    return configs


@pytest.fixture
def readme_commands(tmp_path: Path, monkeypatch) -> list[list[str]]:
    """The runnable commands, from a directory holding the README's user preset, as a fresh
    clone with ``my_conf/`` beside it (relative paths as written)."""
    commands = bash_commands(README)
    runnable = [c for c in commands if c[0] == "ssl-lab"]
    skipped = [c for c in commands if c[0] != "ssl-lab"]
    assert len(runnable) >= 12 and all(c[0] in SKIPPED for c in skipped)
    assert all(any("<" in word for word in c) for c in skipped)  # placeholders, not runs
    monkeypatch.chdir(tmp_path)
    write_user_preset(tmp_path)
    return runnable


def test_the_readme_commands_compose_as_written(readme_commands, tmp_path: Path):
    for command in readme_commands:
        (cfg,) = compose_jobs(command[1:], every_job=False)
        if "--config-dir" in command:
            preset = user_preset_path(tmp_path)
            assert cfg.hydra.runtime.choices.experiment == preset.stem
            assert_preset_applied(cfg, OmegaConf.load(preset))


@pytest.mark.slow
def test_every_job_of_the_readme_sweeps_composes_and_passes_the_start_checks(readme_commands):
    sweeps = [c for c in readme_commands if "-m" in c]
    assert len(sweeps) >= 4
    assert sum(len(compose_jobs(c[1:], every_job=True)) for c in sweeps) >= 40


@pytest.mark.parametrize(
    "written, jobs_expected",
    [
        (["pretext=none,rotation", "seed=0,1,2"], 4),  # 2 pretexts x seed 0, then seeds 1 and 2
        (["pretext=none,rotation", "downstream=knn,finetune"], 4),
    ],
)
def test_sweeps_cross_the_config_groups_and_visit_each_other_value(written, jobs_expected):
    runs = jobs(written, {"pretext", "downstream"})
    assert len(runs) == jobs_expected and len({tuple(r) for r in runs}) == jobs_expected


def test_unquoted_non_ascii_list_items_are_what_hydra_refuses():
    """Why the README quotes the verbalizers: the unquoted form fails in Hydra's lexer."""
    parser = OverridesParser.create()
    with pytest.raises(OverrideParseException, match="LexerNoViableAltException"):
        parser.parse_overrides(["downstream.verbalizers=[差,好]"])
    (quoted,) = parser.parse_overrides(['downstream.verbalizers=["差","好"]'])
    assert quoted.value() == ["差", "好"]
