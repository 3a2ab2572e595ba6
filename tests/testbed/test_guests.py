"""Test guests: a real sshd behind every powered-on VM, reported back to vcsim."""

import secrets
import time
import shlex
import subprocess
import sys
from pathlib import Path

from testbed import PROJECT_ROOT, image, vsphere
from testbed.appliance import DEFAULT_CACHE_DIR
from testbed.guests import ssh


def reported_guest(service_instance, vm):
    return vsphere.read_properties(service_instance, vm, ["guest.ipAddress", "guest.hostName",
                                                          "guest.toolsRunningStatus", "summary.guest.ipAddress"])


def netns_names():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_powered_on_vm_boots_through_cloud_init_as_ubuntu_with_only_the_injected_key(
        service_instance, guest_simulator, deploy_test_vm, ssh_key_pair):
    injected_key, injected_public = ssh_key_pair("injected")
    other_key, _ = ssh_key_pair("other")
    vm = deploy_test_vm("ray-node-a", public_key=injected_public)
    guest = guest_simulator.wait_for_guest(vm._moId)

    accepted = ssh(guest.address, injected_key, "id -un; hostname; cat ~/.ssh/authorized_keys; sudo -n id -un")
    assert accepted.returncode == 0, accepted.stderr
    user, hostname, authorized, sudo_user = accepted.stdout.strip().splitlines()
    assert (user, hostname, sudo_user) == ("ubuntu", "ray-node-a", "root"), "cloud-init made ubuntu, with sudo"
    assert authorized == injected_public.strip()
    status = ssh(guest.address, injected_key, "cloud-init status --long").stdout
    assert "status: done" in status and "DataSourceOVF [seed=com.vmware.guestInfo]" in status, status

    root = ssh(guest.address, injected_key, "id -un", user="root")
    assert root.returncode != 0 and 'Please login as the user "ubuntu"' in root.stdout, "cloud-init's disable_root"
    refused = ssh(guest.address, other_key, "hostname")
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr

    reported = reported_guest(service_instance, vm)
    assert reported["guest.ipAddress"] == guest.address
    assert reported["summary.guest.ipAddress"] == guest.address
    assert reported["guest.hostName"] == "ray-node-a"
    assert reported["guest.toolsRunningStatus"] == "guestToolsRunning"


def test_an_image_without_ovf_properties_takes_its_key_from_guestinfo_metadata(
        guest_simulator, deploy_test_vm, ssh_key_pair):
    """A Packer-style image: cloud-init's VMware datasource, from guestinfo.metadata."""
    key, public = ssh_key_pair("guestinfo")
    vm = deploy_test_vm("ray-node-guestinfo", guestinfo_key=public, style="packer")
    guest = guest_simulator.wait_for_guest(vm._moId)
    booted = ssh(guest.address, key, "hostname; cloud-init status --long")
    assert booted.returncode == 0, booted.stderr
    assert booted.stdout.split("\n")[0] == "ray-node-guestinfo"
    assert "status: done" in booted.stdout and "DataSourceVMware" in booted.stdout, booted.stdout


def test_power_off_removes_the_guest_and_its_ip_power_on_brings_it_back_destroy_removes_it(
        service_instance, guest_simulator, deploy_test_vm, ssh_key_pair):
    key, public = ssh_key_pair("cycle")
    vm = deploy_test_vm("ray-node-cycle", public_key=public)
    guest = guest_simulator.wait_for_guest(vm._moId)
    assert guest.netns in netns_names()

    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    guest_simulator.wait_for_no_guest(vm._moId)
    assert guest.netns not in netns_names()
    assert not guest.state_dir.exists()
    reported = reported_guest(service_instance, vm)
    assert "guest.ipAddress" not in reported
    assert reported["guest.toolsRunningStatus"] == "guestToolsNotRunning"

    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
    again = guest_simulator.wait_for_guest(vm._moId)
    assert ssh(again.address, key, "true").returncode == 0
    assert reported_guest(service_instance, vm)["guest.ipAddress"] == again.address

    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())
    guest_simulator.wait_for_no_guest(vm._moId)
    assert again.netns not in netns_names()


def test_guests_have_their_own_processes_tmp_home_and_hostname(guest_simulator, deploy_test_vm, ssh_key_pair):
    key, public = ssh_key_pair("isolation")
    first = guest_simulator.wait_for_guest(deploy_test_vm("ray-iso-1", public_key=public)._moId)
    second = guest_simulator.wait_for_guest(deploy_test_vm("ray-iso-2", public_key=public)._moId)

    wrote = ssh(first.address, key, "touch /tmp/only-in-first ~/only-in-first && (sleep 300 </dev/null >/dev/null 2>&1 &)")
    assert wrote.returncode == 0, wrote.stderr
    seen_from_second = ssh(second.address, key,
                           "ls /tmp/only-in-first ~/only-in-first 2>&1; ps -eo comm; hostname")
    assert "No such file" in seen_from_second.stdout
    assert "sleep" not in seen_from_second.stdout.split(), "a guest must not see another guest's processes"
    assert seen_from_second.stdout.split()[-1] == "ray-iso-2"
    assert "sleep" in ssh(first.address, key, "ps -eo comm").stdout.split()

    reach = ssh(second.address, key, f"python -c \"import socket; socket.create_connection(('{first.address}', 22), 5)\"")
    assert reach.returncode == 0, f"guests reach each other over the bridge: {reach.stderr}"


def test_guests_see_the_image_not_the_checkout_and_image_writes_stay_in_their_guest(
        guest_simulator, deploy_test_vm, ssh_key_pair):
    """A guest is a user's VM: Ray from the image's /opt/ray, nothing of this project or its venv."""
    key, public = ssh_key_pair("image")
    first = guest_simulator.wait_for_guest(deploy_test_vm("ray-img-1", public_key=public)._moId)
    second = guest_simulator.wait_for_guest(deploy_test_vm("ray-img-2", public_key=public)._moId)

    python = ssh(first.address, key, "command -v ray python; python -c 'import ray; print(ray.__version__)'")
    assert python.returncode == 0, python.stderr
    assert python.stdout.split() == [f"{image.IMAGE_BIN}/ray", f"{image.IMAGE_BIN}/python", "2.60.0"]

    for path in (PROJECT_ROOT / "pyproject.toml", Path(sys.prefix) / "bin" / "python", DEFAULT_CACHE_DIR):
        assert ssh(first.address, key, f"test -e {path}").returncode == 1, f"the guest sees {path}"
    for module in ("testbed", "ray_provider", "ansible_collections.ray_vsphere"):
        missing = ssh(first.address, key, f"cd / && python -c 'import {module}'")
        assert "ModuleNotFoundError" in missing.stderr, f"the guest imports {module}"

    # A pip install into the image's environment is the guest's own, as on a VM's disk.
    marker = "ray_vsphere_image_probe"
    wrote = ssh(first.address, key, f"python -c 'import site; print(site.getsitepackages()[0])' "
                                    f"| xargs -I{{}} sudo -n sh -c 'echo VALUE = 1 > {{}}/{marker}.py'")
    assert wrote.returncode == 0, wrote.stderr
    assert ssh(first.address, key, f"python -c 'import {marker}'").returncode == 0
    assert "ModuleNotFoundError" in ssh(second.address, key, f"python -c 'import {marker}'").stderr
    assert not list(guest_simulator.image_root.rglob(f"{marker}.py")), "a guest wrote into the cached image"


# Every folder down to two levels and every mount point, as the guest's own
# mount table names them: where a file lands is the machine's answer, not ours.
WRITE_EVERYWHERE = r"""
for dir in / /*/ /*/*/ $(findmnt -rno TARGET); do
    [ -d "$dir" ] && [ ! -L "${dir%/}" ] || continue
    dir=${dir%/}
    touch "${dir:-}/$1" 2>/dev/null && echo "${dir:-/}"
done | sort -u
"""


def write_everywhere(guest, key, marker, as_root):
    command = f"sh -c {shlex.quote(WRITE_EVERYWHERE)} probe {marker}"
    wrote = ssh(guest.address, key, f"sudo -n {command}" if as_root else command)
    assert wrote.returncode == 0, wrote.stderr
    return wrote.stdout.split()


def test_every_folder_a_guest_writes_is_its_own(guest_simulator, deploy_test_vm, ssh_key_pair):
    """As on separate VMs: a write anywhere in one guest, by root or by its user, is nowhere else."""
    key, public = ssh_key_pair("separate")
    first = guest_simulator.wait_for_guest(deploy_test_vm("ray-sep-1", public_key=public)._moId)
    second = guest_simulator.wait_for_guest(deploy_test_vm("ray-sep-2", public_key=public)._moId)
    root_marker, user_marker = (f"ray-vsphere-separate-{secrets.token_hex(4)}" for _ in range(2))
    written = {}
    try:
        written[root_marker] = write_everywhere(first, key, root_marker, as_root=True)
        written[user_marker] = write_everywhere(first, key, user_marker, as_root=False)
        # The probe reached the places the issue found shared, and the user's own.
        assert {"/", "/usr", "/var/tmp", "/srv", "/etc", "/tmp", "/dev/shm"} <= set(written[root_marker])
        assert {"/tmp", "/var/tmp", "/dev/shm", "/home/ubuntu"} <= set(written[user_marker])

        for marker, folders in written.items():
            paths = " ".join(shlex.quote(f"{folder.rstrip('/')}/{marker}") for folder in folders)
            in_first = ssh(first.address, key, f"sudo -n ls -d {paths}")
            assert in_first.returncode == 0, f"the writes stay in the first guest: {in_first.stderr}"
            in_second = ssh(second.address, key, f"sudo -n ls -d {paths} 2>/dev/null; true")
            assert in_second.stdout.split() == [], "another guest sees the first guest's writes"
            on_machine = [folder for folder in folders if Path(folder, marker).exists()]
            assert on_machine == [], f"the test machine sees the first guest's writes in {on_machine}"
            assert list(second.state_dir.rglob(marker)) == [], "the first guest wrote into the second's disk"
    finally:
        for marker, folders in written.items():
            for folder in folders:
                Path(folder, marker).unlink(missing_ok=True)


def test_the_guest_simulator_logs_in_again_after_vcenter_ended_its_session(
        service_instance, guest_simulator, deploy_test_vm, ssh_key_pair):
    """vCenter ends idle sessions, and all of them on a restart: the watcher must not go blind."""
    key, public = ssh_key_pair("relogin")
    session_manager = service_instance.content.sessionManager
    own = session_manager.currentSession.key
    others = [session.key for session in session_manager.sessionList if session.key != own]
    assert others, "the guest simulator's session"
    session_manager.TerminateSession(others)

    vm = deploy_test_vm("ray-node-relogin", public_key=public)
    guest = guest_simulator.wait_for_guest(vm._moId)
    assert ssh(guest.address, key, "hostname").stdout.strip() == "ray-node-relogin"
    assert guest_simulator.errors == []
    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    guest_simulator.wait_for_no_guest(vm._moId)
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())


def test_a_guest_sets_its_own_network_settings_and_not_the_machines_kernel(
        guest_simulator, deploy_test_vm, ssh_key_pair):
    key, public = ssh_key_pair("sysctl")
    guest = guest_simulator.wait_for_guest(deploy_test_vm("ray-sysctl", public_key=public)._moId)
    swappiness = Path("/proc/sys/vm/swappiness").read_text()
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    wanted = "1" if forwarding.strip() == "0" else "0"

    try:
        kernel = ssh(guest.address, key, f"sudo -n sh -c 'echo {int(swappiness) // 2 + 1} > /proc/sys/vm/swappiness'")
        assert kernel.returncode != 0 and "Read-only file system" in kernel.stderr, kernel.stderr
        network = ssh(guest.address, key, f"sudo -n sh -c 'echo {wanted} > /proc/sys/net/ipv4/ip_forward' && "
                                          "cat /proc/sys/net/ipv4/ip_forward")
        assert (network.returncode, network.stdout.strip()) == (0, wanted), network.stderr
        assert Path("/proc/sys/vm/swappiness").read_text() == swappiness
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forwarding
    finally:  # a guest that wrote the machine's settings must not leave them changed
        Path("/proc/sys/vm/swappiness").write_text(swappiness)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forwarding)


def test_a_vms_disk_survives_power_off_and_cloud_init_does_not_run_again_and_destroy_removes_it(
        service_instance, guest_simulator, deploy_test_vm, ssh_key_pair):
    """As a VM's VMDK: what the guest wrote is there after a power cycle, and cloud-init, for the same instance-id,
    skips its per-instance modules (the host keys stay); what a reboot clears (/tmp) is cleared."""
    key, public = ssh_key_pair("disk")
    vm = deploy_test_vm("ray-node-disk", public_key=public)
    guest = guest_simulator.wait_for_guest(vm._moId)
    first_boot = ("cat /etc/ssh/ssh_host_ed25519_key.pub; stat -c %Y /var/lib/cloud/instance/sem/config_ssh; "
                  "cat /proc/sys/kernel/random/boot_id")
    wrote = ssh(guest.address, key, "echo warm >> ~/marker && sudo -n sh -c 'echo pkg > /opt/installed' && "
                                    "touch /tmp/scratch && " + first_boot)
    assert wrote.returncode == 0, wrote.stderr
    host_key, ssh_done_at, _ = wrote.stdout.splitlines()
    disk = guest_simulator.disk_dir(vm._moId)
    assert disk.is_dir()

    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    guest_simulator.wait_for_no_guest(vm._moId)
    assert not guest.state_dir.exists() and disk.is_dir(), "power-off ends the boot, not the disk"

    vsphere.wait_for_task(service_instance, vm.PowerOnVM_Task())
    again = guest_simulator.wait_for_guest(vm._moId)
    second = ssh(again.address, key, "cat ~/marker /opt/installed; ls /tmp; " + first_boot
                 + "; cloud-init status --long")
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[:2] == ["warm", "pkg"], "the home folder and /opt as the guest left them"
    assert "scratch" not in lines, "/tmp is cleared at boot"
    assert lines[2:4] == [host_key, ssh_done_at], "per-instance: the host keys are not made again"
    assert "status: done" in second.stdout, second.stdout
    assert "ray-node-disk" == ssh(again.address, key, "hostname").stdout.strip()

    vsphere.wait_for_task(service_instance, vm.PowerOffVM_Task())
    vsphere.wait_for_task(service_instance, vm.Destroy_Task())
    guest_simulator.wait_for_no_guest(vm._moId)
    deadline = time.monotonic() + 10
    while disk.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not disk.exists(), "a destroyed VM's disk is removed"
