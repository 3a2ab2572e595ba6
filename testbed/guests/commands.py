"""Host commands the testbed runs to build guests, and the error they raise."""

import subprocess


class GuestError(RuntimeError):
    pass


def run(*command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise GuestError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result.stdout
