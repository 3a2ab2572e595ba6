"""Bad input fails with a clear, specific error, and no VM (or template) is left behind."""

import io
import socket
import tarfile

import pytest
from conftest import deploy_task


@pytest.fixture(scope="module")
def broken_packages(tmp_path_factory, test_ova):
    folder = tmp_path_factory.mktemp("broken")
    not_xml = folder / "not-xml.ovf"
    not_xml.write_text("<Envelope this is not xml")
    not_ovf = folder / "not-ovf.ovf"
    not_ovf.write_text("<html><body>a web page, not an OVF</body></html>")
    missing_disk = folder / "missing-disk.ovf"
    with tarfile.open(test_ova) as ova:
        missing_disk.write_bytes(ova.extractfile(ova.getnames()[0]).read())  # its disk is not beside it
    no_descriptor = folder / "no-descriptor.ova"
    with tarfile.open(no_descriptor, "w") as archive:
        member = tarfile.TarInfo("readme.txt")
        member.size = 5
        archive.addfile(member, io.BytesIO(b"hello"))
    not_tar = folder / "not-tar.ova"
    not_tar.write_bytes(b"this is not a tar archive\n" * 100)
    truncated = folder / "truncated.ova"
    data = test_ova.read_bytes()
    truncated.write_bytes(data[: len(data) - 40 * 1024])  # the disk ends half-way
    altered = rewritten_ova(test_ova, folder / "altered.ova", disk=lambda data: data[:-1] + bytes([data[-1] ^ 1]))
    unlisted = rewritten_ova(test_ova, folder / "unlisted.ova",
                             manifest=lambda text: b"".join(line for line in text.splitlines(True) if b".vmdk" not in line))
    escaping = folder / "package" / "escaping.ovf"
    escaping.parent.mkdir()
    (folder / "outside.vmdk").write_bytes(b"not part of the package")
    escaping.write_bytes(missing_disk.read_bytes().replace(b'ovf:href="ray-test-appliance-disk1.vmdk"',
                                                           b'ovf:href="../outside.vmdk"'))
    absolute = folder / "absolute.ovf"
    absolute.write_bytes(missing_disk.read_bytes().replace(b'ovf:href="ray-test-appliance-disk1.vmdk"',
                                                           b'ovf:href="/etc/hostname"'))
    # A manifest line for a file of the machine's: its hash would be an oracle, and /dev/zero never ends.
    manifest_outside = rewritten_ova(test_ova, folder / "manifest-outside.ova",
                                     manifest=lambda text: text + b"SHA256(/etc/hostname)= " + b"0" * 64 + b"\n")
    no_manifest = folder / "no-manifest.ova"
    with tarfile.open(test_ova) as original, tarfile.open(no_manifest, "w", format=tarfile.USTAR_FORMAT) as copy:
        for member in original.getmembers():
            if not member.name.endswith(".mf"):
                copy.addfile(member, original.extractfile(member))
    return dict(not_xml=not_xml, not_ovf=not_ovf, missing_disk=missing_disk, no_descriptor=no_descriptor,
                not_tar=not_tar, truncated=truncated, altered=altered, unlisted=unlisted, escaping=escaping,
                absolute=absolute, manifest_outside=manifest_outside, no_manifest=no_manifest)


def rewritten_ova(source, target, disk=None, manifest=None):
    """A copy of the OVA at source with its disk's or its manifest's bytes changed."""
    with tarfile.open(source) as original, tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read()
            change = disk if member.name.endswith(".vmdk") else manifest if member.name.endswith(".mf") else None
            data = change(data) if change else data
            member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    return target


PLACEMENT_ERRORS = [
    (dict(datacenter="DC9"), "datacenter 'DC9' not found in vCenter (there: DC0)"),
    (dict(cluster="C9"), "cluster 'C9' not found in datacenter DC0 (there: DC0_C0, DC0_C1)"),
    (dict(datastore="DS9"), "datastore 'DS9' not found in datacenter DC0 (there: LocalDS_0, LocalDS_1)"),
    (dict(network="Net9"), "network 'Net9' not found in datacenter DC0"),
    (dict(vm_folder="ray/nowhere"), "VM folder 'ray/nowhere' not found in datacenter DC0 (no 'nowhere' below it)"),
    (dict(resource_pool="RP9"), "resource pool 'RP9' not found in cluster DC0_C0 (there: DC0_C0_RP1"),
    (dict(resource_pool="DC0_C1_RP1"), "resource pool 'DC0_C1_RP1' not found in cluster DC0_C0"),
    (dict(resource_pool="/DC0/host/DC0_C1/Resources/DC0_C1_RP1"),
     "resource pool '/DC0/host/DC0_C1/Resources/DC0_C1_RP1' not found in cluster DC0_C0"),
    (dict(cluster="/DC0/host/DC0_C9"), "cluster '/DC0/host/DC0_C9' not found in datacenter DC0 (there: DC0_C0, DC0_C1)"),
    (dict(count=0), "count must be at least 1, not 0"),
    (dict(cluster_name="bad name!"), "cluster_name 'bad name!' must be 1-80 letters"),
    (dict(ovf_properties={"no-such-property": "x"}), "ovf_properties: no-such-property not declared by the OVF"),
    (dict(tags={"bad key": "x"}), "tags: 'bad key' is not a valid tag key"),
    (dict(preferred_cidr="10.0.0.0/99"), "preferred_cidr:"),
]


@pytest.mark.parametrize("options, message", PLACEMENT_ERRORS, ids=[next(iter(o)) + "-" + str(next(iter(o.values())))
                                                                   for o, _ in PLACEMENT_ERRORS])
def test_bad_placement_and_options_fail_before_anything_is_created(play, test_ova, vm_names, options, message):
    before = vm_names()
    arguments = dict(dict(cluster_name="epsilon", count=2, request_id="bad"), **options)
    result = play([deploy_task(arguments.pop("cluster_name"), test_ova, **arguments)]).result
    assert result["failed"]
    assert message in result["msg"]
    assert vm_names() == before


PACKAGE_ERRORS = [
    ("missing", "OVF source {path}: no such file"),
    ("not_xml", "OVF source {path}: the descriptor is not valid XML"),
    ("not_ovf", "OVF source {path}: the descriptor is not an OVF Envelope"),
    ("missing_disk", "OVF source {path}: the descriptor references ray-test-appliance-disk1.vmdk, which is missing"),
    ("no_descriptor", "OVF source {path}: an archive without an .ovf descriptor"),
    ("not_tar", "OVF source {path}: not an OVA"),
    ("truncated", "OVF source {path}: the archive is damaged"),
    ("altered", "OVF source {path}: ray-test-appliance-disk1.vmdk's SHA256 is "),
    ("altered", "manifest ray-test-appliance.mf gives: the image is damaged or was altered"),
    ("unlisted", "OVF source {path}: manifest ray-test-appliance.mf does not list ray-test-appliance-disk1.vmdk"),
    ("escaping", "OVF source {path}: the descriptor references '../outside.vmdk', which is outside the package"),
    ("absolute", "OVF source {path}: the descriptor references '/etc/hostname', which is outside the package"),
    ("manifest_outside", "OVF source {path}: manifest ray-test-appliance.mf lists '/etc/hostname', which is not a "
                         "file of the package"),
    ("no_manifest", "OVF source {path}: no manifest (ray-test-appliance.mf) beside the descriptor, so nothing shows "
                    "the image is the one its maker wrote: give its ovf_sha256"),
]


@pytest.mark.parametrize("package, message", PACKAGE_ERRORS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(PACKAGE_ERRORS)])
def test_missing_or_malformed_ovf_fails_before_anything_is_created(
        play, broken_packages, tmp_path, vm_names, package, message):
    # Each of these fails before ImportVApp. Failures after it, where a half-made VM
    # must be removed, are injected in test_injected_faults.py and test_ovf_upload.py.
    path = broken_packages.get(package, tmp_path / "missing.ova")
    before = vm_names()
    for clone_from_template in (True, False):
        result = play([deploy_task("epsilon", path, names=["epsilon-0"],
                                   clone_from_template=clone_from_template)]).result
        assert result["failed"]
        assert message.format(path=path) in result["msg"]
        assert vm_names() == before


def free_loopback_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CONNECTION_ERRORS = [
    (dict(VMWARE_PASSWORD="not-the-password"), "rejected the login of 'administrator@vsphere.local': wrong username or password"),
    (dict(VMWARE_USER="nobody@vsphere.local"), "rejected the login of 'nobody@vsphere.local'"),
    (dict(VMWARE_HOST="127.0.0.1", VMWARE_PORT="{free_port}"), "cannot reach vCenter 127.0.0.1:{free_port}"),
    # vcsim's certificate is good, but the CA given is another one: the fix is the right CA in ca_path.
    (dict(VMWARE_CA_PATH="{other_ca}"),
     "TLS with vCenter 127.0.0.1:{port} failed: its certificate is not signed by a CA in ca_path {other_ca} "
     "(unable to get local issuer certificate). Give the CA certificate that signed it (VMCA's root or your "
     "internal CA, PEM) in ca_path (VMWARE_CA_PATH), or add it to the system's trust store."),
    # The certificate is for 127.0.0.1 only, as vcsim listens there; localhost reaches it under another name.
    (dict(VMWARE_HOST="localhost"),
     "TLS with vCenter localhost:{port} failed: its certificate is not valid for the name 'localhost' (it is for "
     "127.0.0.1). Set hostname (VMWARE_HOST) to a name the certificate lists, or have vCenter's certificate "
     "re-issued with 'localhost' among its subject alternative names."),
    (dict(VMWARE_CA_PATH="{other_ca}.missing"), "ca_path {other_ca}.missing: no such file (VMWARE_CA_PATH)"),
]


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that did not sign vcsim's certificate."""
    from testbed import pki
    return pki.make_ca(tmp_path_factory.mktemp("other-ca"), common_name="some other CA").certificate


@pytest.mark.parametrize("overrides, message", CONNECTION_ERRORS,
                         ids=["wrong-password", "wrong-user", "unreachable", "certificate-of-another-ca",
                              "host-name-mismatch", "missing-ca-file"])
def test_connection_failures_say_what_is_wrong(play, vcsim, test_ova, vm_names, other_ca, overrides, message):
    values = dict(free_port=free_loopback_port(), port=vcsim.endpoint.port, other_ca=other_ca)
    env = dict(vcsim.endpoint.environment(), **{k: v.format(**values) for k, v in overrides.items()})
    before = vm_names()
    result = play([deploy_task("epsilon", test_ova, names=["epsilon-0"])], env=env).result
    assert result["failed"]
    assert message.format(**values) in result["msg"]
    assert vm_names() == before
    if "VMWARE_PASSWORD" in overrides:
        assert "not-the-password" not in str(result)


def test_validate_certs_false_skips_the_certificate_check(play, vcsim, other_ca):
    """For a test vCenter only: with the check off, neither the wrong CA nor a name mismatch stops the login."""
    env = dict(vcsim.endpoint.environment(), VMWARE_HOST="localhost", VMWARE_CA_PATH=str(other_ca),
               VMWARE_VALIDATE_CERTS="false")
    result = play([{"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "nobody"}}], env=env).result
    assert not result.get("failed"), result
    assert result["nodes"] == []
    # ...but never silently: the result says so (AWX's own VMware credential sets VMWARE_VALIDATE_CERTS=False).
    assert [warning for warning in result["warnings"] if "validate_certs is false" in warning] == [
        "validate_certs is false (VMWARE_VALIDATE_CERTS): vCenter localhost's certificate is not verified, so "
        "whoever answers at that address gets the password and every call. Give the CA that signed it in ca_path "
        "(VMWARE_CA_PATH) and leave validate_certs true; in AWX, AWX's VMware vCenter credential turns the check "
        "off: use the credential type 'vCenter with verified TLS (ray_vsphere)' "
        "(awx/credential_types/vcenter_verified.yml) instead."]
    strict = play([{"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "nobody"}}],
                  env=dict(env, VMWARE_VALIDATE_CERTS="true")).result
    assert strict["failed"] and "TLS with vCenter localhost" in strict["msg"]
    verified = play([{"name": "List", "ray_vsphere.cluster.node_info": {"cluster_name": "nobody"}}]).result
    assert verified["nodes"] == [] and vcsim.endpoint.environment()["VMWARE_VALIDATE_CERTS"] == "true"
    assert not [warning for warning in verified.get("warnings", []) + strict.get("warnings", [])
                if "validate_certs" in warning], "no warning when the certificate is verified"


def test_missing_credentials_name_the_environment_variables(play, test_ova):
    result = play([deploy_task("epsilon", test_ova, names=["epsilon-0"])], env={"VMWARE_HOST": "127.0.0.1"}).result
    assert result["failed"]
    # Named by the variables AWX's credential sets, not Ansible's generic "missing required arguments".
    assert result["msg"] == ("missing vCenter connection: set username (or VMWARE_USER), "
                             "password (or VMWARE_PASSWORD)")
