"""What a Ray job can reach on the node it runs on: a job submitted with the cluster's token tries the head's secrets.

The probe runs as a job's entrypoint (Ray's job manager starts it on the
head, as the user Ray's daemons run as). It tries to read the cluster's key
and the autoscaler's config wherever a head keeps them, to decrypt the head's
vCenter password blob with ray_provider.config.decrypt_secret and every key it
finds, `sudo -n true`, and to plant a file in the autoscaler's Python
environment, its ~/.ansible, its home (ansible.cfg, .ansible.cfg) and its state
dir. The same probe run as a user that holds the secrets must reach them: the
tests run it so, so a probe that reaches nothing anywhere cannot pass.
"""

import base64
import json
import shlex

from testbed.guests import ssh

PROBE = r'''
import getpass, importlib.util, json, os, subprocess, sys
blob = sys.argv[1] if len(sys.argv) > 1 else ""
homes = [os.path.expanduser("~" + user) for user in ("ubuntu", "ray-autoscaler")]
keys = [os.path.join(home, "ray_bootstrap_key.pem") for home in homes]
found = {"user": getpass.getuser(), "read": {}, "decrypted": False, "written": {}}
for path in keys + [os.path.join(home, "ray_bootstrap_config.yaml") for home in homes]:
    try:
        with open(path) as stream:
            stream.read()
        found["read"][path] = True
    except OSError:
        found["read"][path] = False
if blob and importlib.util.find_spec("ray_provider"):
    from pathlib import Path
    from ray_provider.config import decrypt_secret
    for key in keys:
        try:
            decrypt_secret(blob, Path(key))
            found["decrypted"] = True
        except Exception:
            pass
found["sudo"] = subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode
spec = importlib.util.find_spec("ray")
targets = [os.path.dirname(os.path.dirname(spec.origin))]  # the site-packages Ray (and the provider) load from
autoscaler_home = homes[1]
targets += [os.path.join(autoscaler_home, name) for name in (".ansible", "", ".ray-vsphere")]
for folder in targets:
    planted = os.path.join(folder, "planted_by_a_job.py")
    try:
        with open(planted, "x") as stream:
            stream.write("raise SystemExit('planted')\n")
        os.unlink(planted)
        found["written"][folder] = True
    except FileExistsError:
        found["written"][folder] = True
    except OSError:
        found["written"][folder] = False
print("PROBE " + json.dumps(found))
'''

# Posts a job to the head's job API (from the head, where it listens) with the token and prints its logs.
SUBMIT_AND_LOG = r'''
import json, sys, time, urllib.request
token, entrypoint = sys.argv[1], sys.argv[2]
def call(path, body=None):
    request = urllib.request.Request("http://127.0.0.1:8265" + path, method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)
job = call("/api/jobs/", {"entrypoint": entrypoint})["submission_id"]
while call("/api/jobs/" + job)["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
    time.sleep(0.5)
print(call("/api/jobs/" + job + "/logs")["logs"])
'''


def probe_command(blob=""):
    """The shell command that runs the probe with the image's Python, handing it the vault blob to try."""
    encoded = base64.b64encode(PROBE.encode()).decode()
    return shlex.join(["python", "-c", f"import base64; exec(base64.b64decode('{encoded}'))", blob])


def parse(output):
    marked = [line for line in output.splitlines() if line.startswith("PROBE ")]
    if not marked:
        raise AssertionError(f"the probe printed no result: {output[-3000:]}")
    return json.loads(marked[-1][len("PROBE "):])


def as_job(head_ip, key_path, token, blob="", timeout=180):
    """What the probe reached as a Ray job submitted with `token` to the head's job API."""
    command = shlex.join(["python", "-c", SUBMIT_AND_LOG, token, probe_command(blob)])
    result = ssh(head_ip, key_path, command, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return parse(result.stdout)


def as_user(head_ip, key_path, user, blob="", timeout=120):
    """What the probe reached run directly as `user` on the head (through the SSH user's sudo)."""
    result = ssh(head_ip, key_path, f"sudo -H -u {shlex.quote(user)} env \"PATH=$PATH\" {probe_command(blob)}",
                 timeout=timeout)
    return parse(result.stdout + result.stderr)
