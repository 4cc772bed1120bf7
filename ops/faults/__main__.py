"""``python -m ops.faults``: the fault campaign (same as ``jobq faults``)."""

from ops.faults.runner import faults_command

faults_command(prog_name="python -m ops.faults")
