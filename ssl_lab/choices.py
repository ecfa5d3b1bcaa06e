"""The choices of each config group: the package's configs plus the user's own (``--config-dir``
or ``hydra.searchpath``), without the private files that several choices share (``data/_text``).
``ssl-lab --help`` lists them, and a ``group=choice`` override naming none of them is refused in
one line before Hydra starts."""

import re
from importlib.util import find_spec
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"


def _search_path_dir(entry: str) -> Path | None:
    """The folder of a ``hydra.searchpath`` entry: ``file://DIR`` or ``pkg://package/sub``."""
    entry = entry.strip().strip("'\"")
    if entry.startswith("file://"):
        return Path(entry.removeprefix("file://")).expanduser()
    if entry.startswith("pkg://"):
        package, _, sub = entry.removeprefix("pkg://").partition("/")
        spec = find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(spec.submodule_search_locations[0]) / sub
    return Path(entry).expanduser() if entry else None


def config_dirs(argv: list[str]) -> list[Path]:
    """The package's config folder and the user's, as a command line names them."""
    dirs = [CONF_DIR]
    for i, arg in enumerate(argv):
        value = None
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("--config-dir=", "-cd=")):
            value = arg.split("=", 1)[1]
        if value:
            dirs.append(Path(value).expanduser())
        match = re.fullmatch(r"\+?hydra\.searchpath=\[(.*)\]", arg)
        if match:
            dirs += [d for d in map(_search_path_dir, match[1].split(",")) if d is not None]
    return dirs


def group_choices(dirs: list[Path]) -> dict[str, list[str]]:
    """``{group: sorted choices}`` over ``dirs``; Hydra's own groups (``hydra/...``) aside, as
    they also hold plugins' choices."""
    found: dict[str, set[str]] = {}
    for root in dirs:
        if not root.is_dir():
            continue
        for path in root.rglob("*.yaml"):
            group = path.parent.relative_to(root).as_posix()
            if group == "." or group.split("/")[0] == "hydra" or path.stem.startswith("_"):
                continue
            found.setdefault(group, set()).add(path.stem)
    return {group: sorted(names) for group, names in sorted(found.items())}


def choices_text(argv: list[str]) -> str:
    """One line per group: ``group: a, b, c`` (for ``--help``)."""
    width = max(map(len, group_choices(config_dirs(argv))), default=0)
    return "\n".join(
        f"{group:<{width}}  {', '.join(names)}"
        for group, names in group_choices(config_dirs(argv)).items()
    )
