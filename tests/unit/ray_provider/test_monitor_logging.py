"""The head's monitor logs no Vault blob: Ray v2's config dump, run through ray_provider.monitor_logging.

The message is the one Ray's autoscaler v2 logs when it starts (its
AutoscalingConfig.dump() of the head's config), from a script run as the
head runs Ray's monitor; the oracle is the cluster's key, which must open no
blob in what the script logged.
"""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

from ray_provider.config import encrypt_secret
from testbed.guests import make_key_pair


def test_the_monitor_logs_its_config_without_the_vault_blob_of_the_password(tmp_path):
    key = make_key_pair(tmp_path / "key")
    blob = encrypt_secret("Passw0rd-of-the-head", key)
    cluster = yaml.safe_load((Path(__file__).parents[3] / "examples" / "ray-cluster.vsphere.yaml").read_text())
    cluster["provider"].update(vcenter_password_vault=blob, head_account_fingerprint="dead")
    config = AutoscalingConfig(cluster, skip_content_hash=True)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config.dump())
    monitor = tmp_path / "monitor.py"
    monitor.write_text(textwrap.dedent('''
        import logging, pathlib, sys
        # As Ray's monitor: its handlers set up once it runs, its message logged with and without arguments.
        logging.basicConfig(filename=sys.argv[2], level=logging.INFO, format="%(message)s")
        dump = pathlib.Path(sys.argv[1]).read_text()
        logging.getLogger("ray.autoscaler.v2.autoscaler").info(f"Using Autoscaling Config: \\n{dump}")
        logging.getLogger("ray").info("provider: %s", {"vcenter_password_vault": dump.split("vault: ")[1]})
    '''))
    log = tmp_path / "monitor.log"
    run = subprocess.run([sys.executable, "-I", "-m", "ray_provider.monitor_logging", str(monitor), str(config_file),
                          str(log)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    logged = log.read_text()
    assert "Using Autoscaling Config:" in logged and "head_account_fingerprint: dead" in logged
    assert logged.count("<vault blob not logged>") == 2, logged
    assert "$ANSIBLE_VAULT" in config_file.read_text() and "ANSIBLE_VAULT" not in logged
    hex_lines = [line for line in re.split(r"\s+", blob) if re.fullmatch(r"[0-9a-f]{16,}", line)]
    assert len(hex_lines) > 3 and not any(line in logged for line in hex_lines), logged
