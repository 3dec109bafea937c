"""``import neurodecode`` (and its light subpackages) must not pull in heavy frameworks."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "open_clip", "lightning", "braindecode", "mne")


@pytest.mark.parametrize("stmt", ["import neurodecode", "import neurodecode.io", "import neurodecode.decoders", "import neurodecode.utils"])
def test_import_is_light(stmt):
    code = f"import sys; {stmt}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(filter(None, r.stdout.strip().split(",")))
    assert not (loaded & {"torch", "diffusers", "open_clip", "lightning", "braindecode"}), loaded


def test_cli_help_is_light():
    code = "import sys; import neurodecode.cli; print(','.join(m for m in ('torch','diffusers','open_clip') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"the CLI imports {r.stdout.strip()} at start-up"
