"""node_deploy's user_data: merged with the node's own cloud-config, read back by cloud-init's own code.

cloud-init is Debian's package (what the test guests boot with), run by
Debian's /usr/bin/python3 in a subprocess: it decodes the user-data as its
VMware datasource does, splits the MIME message with its UserDataProcessor,
merges the cloud-config parts with its CloudConfigPartHandler and makes the
users list with its users code. The oracle is what cloud-init makes of it,
not what we wrote.
"""

import base64
import json
import subprocess
import textwrap

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._deploy_request import user_data_problems
from deploy_request_tools import request

AS_CLOUD_INIT_READS_IT = """
import json, sys, tempfile
from cloudinit import handlers, helpers, user_data
from cloudinit.distros import ug_util
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.sources.DataSourceVMware import decode

blob = decode("userdata", "base64", sys.stdin.read())
with tempfile.TemporaryDirectory() as folder:
    paths = helpers.Paths({"cloud_dir": folder})
    message = user_data.UserDataProcessor(paths).process(blob)
    merged = CloudConfigPartHandler(paths)
    merged.handle_part(None, handlers.CONTENT_START, None, None, None, None)
    others = []

    def take(_data, filename, payload, headers):
        content_type = headers["Content-Type"]
        if content_type == "text/cloud-config":
            merged.handle_part(None, content_type, filename, payload, None, headers)
        else:
            others.append([content_type, payload.decode() if isinstance(payload, bytes) else payload])

    handlers.walk(message, take, {})
    config = merged.cloud_buf or {}

class UbuntuCloudImage:
    def get_default_user(self):
        return {"name": "ubuntu", "lock_passwd": True, "groups": ["adm", "sudo"],
                "sudo": ["ALL=(ALL) NOPASSWD:ALL"], "shell": "/bin/bash"}

users = ug_util.normalize_users_groups(config, UbuntuCloudImage())[0]
print(json.dumps({"config": config, "others": others, "users": users}))
"""

WRITE_AND_RUN = {"write_files": [{"path": "/etc/mine", "content": "mine\n"}],
                 "runcmd": ["touch /var/tmp/mine-ran"]}


def as_cloud_init_reads_it(encoded):
    result = subprocess.run(["/usr/bin/python3", "-c", AS_CLOUD_INIT_READS_IT], input=encoded,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Failed at merging" not in result.stderr and "Unhandled" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def read(deploy, name="c1-head"):
    """What cloud-init makes of the node's user-data, after checking both datasources get the same."""
    identity = deploy.cloud_init_identity(name)
    assert identity["user-data"] == deploy.user_data(name), "the OVF property says what guestinfo.userdata says"
    return as_cloud_init_reads_it(identity["user-data"])


@pytest.mark.parametrize("user_data", [WRITE_AND_RUN, "#cloud-config\n" + json.dumps(WRITE_AND_RUN)],
                         ids=["mapping", "text"])
def test_a_users_cloud_config_and_the_nodes_own_both_apply(tmp_path, user_data):
    deploy = request(tmp_path, ssh_host_key=True, service_users=["ray", "ray-autoscaler"], user_data=user_data)
    read_back = read(deploy)
    config = read_back["config"]
    assert config["write_files"] == WRITE_AND_RUN["write_files"] and config["runcmd"] == WRITE_AND_RUN["runcmd"]
    private, public = deploy.host_keys["c1-head"]
    assert config["ssh_keys"] == {"ed25519_private": private, "ed25519_public": public}
    assert (config["ssh_deletekeys"], config["ssh_genkeytypes"]) == (True, [])
    assert sorted(read_back["users"]) == ["ray", "ray-autoscaler", "ubuntu"]
    assert "sudo" not in read_back["users"]["ray"] and read_back["users"]["ubuntu"]["default"] is True


def test_the_users_own_users_are_made_beside_the_service_users(tmp_path):
    mine = {"users": ["default", {"name": "alice", "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/zsh"}],
            "packages": ["htop"]}
    read_back = read(request(tmp_path, service_users=["ray"], user_data=mine))
    users = read_back["users"]
    assert sorted(users) == ["alice", "ray", "ubuntu"]
    assert users["alice"]["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and "sudo" not in users["ray"]
    assert read_back["config"]["packages"] == ["htop"]


def test_a_script_keeps_its_type_and_runs_beside_the_cloud_config(tmp_path):
    script = "#!/bin/sh\necho mine > /var/tmp/mine\n"
    read_back = read(request(tmp_path, ssh_host_key=True, service_users=["ray"], user_data=script))
    assert read_back["others"] == [["text/x-shellscript", script]]
    assert sorted(read_back["users"]) == ["ray", "ubuntu"] and "ssh_keys" in read_back["config"]


def test_a_users_multipart_message_keeps_every_part_and_its_merge_rules(tmp_path):
    mine = textwrap.dedent("""\
        Content-Type: multipart/mixed; boundary="MINE"
        MIME-Version: 1.0

        --MINE
        Content-Type: text/cloud-config
        Merge-Type: list(append)+dict(recurse_array)+str()

        #cloud-config
        runcmd: [first]

        --MINE
        Content-Type: text/cloud-config
        Merge-Type: list(append)+dict(recurse_array)+str()

        #cloud-config
        runcmd: [second]

        --MINE
        Content-Type: text/x-shellscript

        #!/bin/sh
        echo third

        --MINE--
        """)
    read_back = read(request(tmp_path, service_users=["ray"], user_data=mine))
    assert read_back["config"]["runcmd"] == ["first", "second"], "the user's own merge rules still apply"
    assert read_back["others"] == [["text/x-shellscript", "#!/bin/sh\necho third\n"]]
    assert sorted(read_back["users"]) == ["ray", "ubuntu"]


def test_without_own_settings_the_users_data_goes_alone(tmp_path):
    read_back = read(request(tmp_path, user_data=WRITE_AND_RUN))
    assert read_back["config"] == WRITE_AND_RUN and read_back["others"] == []


def test_the_same_request_renders_the_same_user_data_byte_for_byte(tmp_path):
    deploy = request(tmp_path, ssh_host_key=True, service_users=["ray"], user_data="#!/bin/sh\ntrue\n")
    assert deploy.user_data("c1-head") == deploy.user_data("c1-head")
    assert base64.b64decode(deploy.user_data("c1-head")).decode().count("Content-Type: text/") == 2


@pytest.mark.parametrize("params, expected", [
    ({"ssh_host_key": True, "user_data": {"ssh_keys": {"rsa_private": "x"}}},
     "user_data: sets ssh_keys, which ssh_host_key sets so that the node offers only the host key recorded for it"),
    ({"ssh_host_key": True, "user_data": "#cloud-config\nssh_deletekeys: false\n"},
     "user_data: sets ssh_deletekeys, which ssh_host_key sets"),
    ({"service_users": ["ray"], "user_data": {"users": [{"name": "ray", "sudo": "ALL=(ALL) NOPASSWD:ALL"}]}},
     "user_data: users: ray made here already, without sudo (service_users): give your user another name"),
    ({"service_users": ["ray"], "user_data": {"users": "default, alice"}},
     "user_data: users must be a list, which the service users are added to, not str"),
])
def test_user_data_that_would_undo_the_nodes_own_is_refused_before_anything_is_made(tmp_path, params, expected):
    with pytest.raises(RayVsphereError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        request(tmp_path, **params)


def test_host_key_settings_are_the_users_own_without_ssh_host_key(tmp_path):
    config = read(request(tmp_path, user_data={"ssh_deletekeys": False}))["config"]
    assert config == {"ssh_deletekeys": False}


@pytest.mark.parametrize("params, expected", [
    ({"user_data": "echo hello"}, "user_data would be ignored by cloud-init: text must start with one of"),
    ({"user_data": ["runcmd"]}, "user_data must be text"),
    ({"user_data": "#cloud-config\n- a list\n"}, "user_data has a #cloud-config part that is not a mapping but a list"),
    ({"ovf_properties": {"user-data": "I2Nsb3VkLWNvbmZpZw=="}},
     "ovf_properties user-data: cloud-init 25.1 and later read guestinfo first"),
    ({"guestinfo": {"userdata": "x"}}, "guestinfo userdata: cloud-init before 25.1 (Debian 12, Ubuntu without the "
                                       "backport) reads the OVF environment first"),
    ({"guestinfo": {"guestinfo.userdata": "x"}}, "Give your user-data as user_data instead"),
])
def test_user_data_cloud_init_would_miss_or_ignore_is_an_error_naming_user_data(tmp_path, params, expected):
    with pytest.raises(RayVsphereError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        request(tmp_path, **params)
    assert user_data_problems(dict(params)), "the Ray provider's config check finds it too"
