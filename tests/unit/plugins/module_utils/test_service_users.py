"""node_deploy's service_users: the user-data it writes, read by cloud-init's own schema and users code.

cloud-init is Debian's package (what the test guests boot with), run by
Debian's /usr/bin/python3 in a subprocess. The image's default user is
Ubuntu's cloud image's (testbed/guests/boot.py): it must keep its sudo, and
the service users must get none.
"""

import base64
import json
import subprocess

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._user_data import node_user_data
from deploy_request_tools import request

USERS_AS_CLOUD_INIT_MAKES_THEM = """
import json, sys
from cloudinit import util
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.distros import ug_util

config = util.load_yaml(sys.stdin.read())
validate_cloudconfig_schema({"users": config["users"]}, get_schema(), strict=True)

class UbuntuCloudImage:
    def get_default_user(self):
        return {"name": "ubuntu", "lock_passwd": True, "groups": ["adm", "sudo"],
                "sudo": ["ALL=(ALL) NOPASSWD:ALL"], "shell": "/bin/bash"}

print(json.dumps(ug_util.normalize_users_groups(config, UbuntuCloudImage())[0]))
"""


def users_cloud_init_makes(user_data):
    result = subprocess.run(["/usr/bin/python3", "-c", USERS_AS_CLOUD_INIT_MAKES_THEM], input=user_data,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_service_users_get_no_sudo_and_the_default_user_keeps_its_own():
    users = users_cloud_init_makes(node_user_data(service_users=["ray", "ray-autoscaler"]))
    assert users["ubuntu"]["sudo"] == ["ALL=(ALL) NOPASSWD:ALL"] and users["ubuntu"]["default"] is True
    for name in ("ray", "ray-autoscaler"):
        assert "sudo" not in users[name] and "groups" not in users[name] and users[name]["lock_passwd"] is True
    assert sorted(users) == ["ray", "ray-autoscaler", "ubuntu"]


def test_a_host_key_and_service_users_share_one_user_data_both_ways_vcenter_presents_it(tmp_path):
    deploy = request(tmp_path, ssh_host_key=True, service_users=["ray"])
    identity = deploy.cloud_init_identity("c1-head")
    user_data = base64.b64decode(identity["user-data"]).decode()
    assert sorted(users_cloud_init_makes(user_data)) == ["ray", "ubuntu"]
    assert deploy.host_keys["c1-head"][1] in user_data
    assert deploy.user_data("c1-head") == identity["user-data"], "guestinfo.userdata says what the OVF property says"


def test_without_service_users_or_host_key_there_is_no_user_data(tmp_path):
    assert "user-data" not in request(tmp_path).cloud_init_identity("c1-head")


@pytest.mark.parametrize("params, expected", [
    ({"service_users": ["Ray"]}, "service_users 'Ray' is not a user name useradd takes"),
    ({"service_users": ["ray; rm -rf /"]}, "service_users 'ray; rm -rf /' is not a user name useradd takes"),
    ({"service_users": ["ray"], "guestinfo": {"userdata": "x"}},
     "guestinfo userdata: cloud-init before 25.1 (Debian 12, Ubuntu without the backport) reads the OVF environment "
     "first where the OVF declares its transport, and then never reads guestinfo.userdata. Give your user-data as "
     "user_data instead"),
])
def test_bad_service_users_fail_before_anything_is_made(tmp_path, params, expected):
    with pytest.raises(RayVsphereError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        request(tmp_path, **params)
