import json
import subprocess
import sys

from detaccel import __version__
from detaccel.cli import main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert capsys.readouterr().out.strip() == f"detaccel {__version__}"


def test_info_reports_operator_backends(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["extension_loaded"] is True
    for name in ("roi_pool_forward", "spp_pool_forward", "nms", "batched_nms"):
        assert "cpu" in info["operators"][name]


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "detaccel", "info"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "roi_pool_forward" in result.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "<command>" in capsys.readouterr().out
