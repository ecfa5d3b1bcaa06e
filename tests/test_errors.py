"""Bad input ends with one line naming the cause, a non-zero exit and no traceback."""

import pytest
from conftest import TINY, run_cli


@pytest.mark.parametrize(
    "override, cause",
    [
        (
            "pretext=nonexistent",
            "unknown pretext 'nonexistent' (choose from: clm, inpainting, jigsaw, "
            "mlm, none, rotation, supervised)",
        ),
        ("data.labels_per_class=0", "data.labels_per_class=0: must be at least 1"),
        ("data.labels_per_class=500", "larger than the smallest class"),
        ("backbone.checkpoint=/missing/file", "backbone.checkpoint: no such file: /missing/file"),
        ("data.modality=text", "backbone=small_cnn works on image data, but data=digits is text"),
        ("pretext=mlm", "pretext=mlm works on text data, but data=digits is image"),
        (
            "downstream=classical",
            "downstream=classical ignores the backbone: run it with pretext=none, "
            "not pretext=rotation",
        ),
    ],
)
def test_bad_input_fails_with_one_clear_line(tmp_path, override, cause):
    # downstream.* keys differ between downstream tasks: these runs fail before training anyway
    result = run_cli(tmp_path, *[o for o in TINY if not o.startswith("downstream.")], override)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssl-lab: error: "), result.stderr
    assert cause in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(tmp_path.rglob("metrics.json"))
