"""OvfPackage reads an .ovf or .ova from disk or over https: where its files land, and descriptors it refuses.

Packages are written here byte by byte and served by an ImageServer on
127.0.0.1 with a CA of the test's own; the oracle for each file is the bytes
written, hashed with hashlib, never what OvfPackage reports of itself.
"""

import hashlib
import io
import tarfile

import pytest

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_package import OvfPackage
from testbed.image_server import ImageServer, loopback_tls

ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
{files}
  </References>
  <VirtualSystem ovf:id="vm"><Info>{info}</Info></VirtualSystem>
</Envelope>
"""


def descriptor(hrefs, info="A test package"):
    files = "\n".join(f'    <File ovf:id="file{index}" ovf:href="{href}"/>' for index, href in enumerate(hrefs))
    return ENVELOPE.format(files=files, info=info)


def write_ovf(folder, files, name="package.ovf"):
    """An .ovf at folder/name referencing `files` ({href: bytes}), each written at its href, with its manifest; its path."""
    for href, content in files.items():
        (folder / href).parent.mkdir(parents=True, exist_ok=True)
        (folder / href).write_bytes(content)
    (folder / name).write_text(descriptor(files))
    write_manifest(folder / name, list(files))
    return folder / name


def write_manifest(ovf_path, hrefs, extra_lines=()):
    """The .mf beside ovf_path, as ovftool writes it: the descriptor's and each file's SHA256, then extra_lines."""
    lines = [f"SHA256({name})= {hashlib.sha256((ovf_path.parent / name).read_bytes()).hexdigest()}"
             for name in [ovf_path.name] + hrefs]
    ovf_path.with_suffix(".mf").write_text("\n".join(lines + list(extra_lines)) + "\n")


def read_all(package, href):
    with package.open_file(href) as stream:
        return stream.read()


def expected_hash(ovf_path, files):
    """content_hash's definition: the descriptor, then each referenced file in References order."""
    digest = hashlib.sha256(ovf_path.read_bytes())
    for content in files.values():
        digest.update(content)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """(ImageServer over https serving its folder, that folder, the CA file to trust)."""
    folder = tmp_path_factory.mktemp("served")
    context, ca_file = loopback_tls(tmp_path_factory.mktemp("pki"))
    with ImageServer(folder, tls_context=context) as server:
        yield server, folder, str(ca_file)


@pytest.fixture
def serve(https_server, tmp_path):
    """serve(files) -> URL of an .ovf on the server referencing them, in a folder of this test's own."""
    server, folder, _ = https_server
    own = folder / tmp_path.name
    own.mkdir()

    def publish(files):
        ovf = write_ovf(own, files)
        return server.url(f"{own.name}/{ovf.name}"), ovf

    return publish


def open_url(url, https_server):
    return OvfPackage(url, ca_path=https_server[2])


def test_an_ovf_at_a_url_finds_files_its_hrefs_place_in_subfolders(serve, https_server):
    files = {"disks/disk1.vmdk": b"first disk " * 100, "nvram/vm.nvram": b"nvram"}
    url, served_ovf = serve(files)
    with open_url(url, https_server) as package:
        assert package.downloaded
        assert package.files == {href: len(content) for href, content in files.items()}
        for href, content in files.items():
            assert read_all(package, href) == content
        assert package.content_hash == expected_hash(served_ovf, files)


def test_two_hrefs_with_one_basename_keep_their_own_content(serve, https_server):
    files = {"a/disk.vmdk": b"disk of a", "b/disk.vmdk": b"the other disk, of b"}
    url, served_ovf = serve(files)
    with open_url(url, https_server) as package:
        assert {href: read_all(package, href) for href in files} == files
        assert package.content_hash == expected_hash(served_ovf, files)


def test_a_url_and_a_local_copy_of_one_ovf_have_one_content_hash(serve, https_server, tmp_path):
    """A template made from either is found from the other: the download hashes what a local read hashes."""
    files = {"disks/disk.vmdk": b"disk", "disk.vmdk": b"a different disk at the top"}
    url, served_ovf = serve(files)
    with open_url(url, https_server) as remote, OvfPackage(str(served_ovf)) as local:
        assert remote.content_hash == local.content_hash == expected_hash(served_ovf, files)


LATIN_1_INFO = "Caf\xe9 image".encode("latin-1")  # b"Caf\xe9": 0xe9 starts no valid UTF-8 sequence here


def latin_1_descriptor(hrefs):
    return descriptor(hrefs, info="@INFO@").encode("utf-8").replace(b"@INFO@", LATIN_1_INFO)


def not_utf8_message(location, name):
    offset = latin_1_descriptor(["disk.vmdk"]).index(b"\xe9")
    return f"OVF source {location}: descriptor {name} is not UTF-8 text (byte 0xe9 at offset {offset})"


def test_a_non_utf8_ova_descriptor_is_refused_naming_the_file(tmp_path):
    ova = tmp_path / "latin1.ova"
    with tarfile.open(ova, "w") as archive:
        for name, content in (("latin1.ovf", latin_1_descriptor(["disk.vmdk"])), ("disk.vmdk", b"disk")):
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    with pytest.raises(RayVsphereError) as raised, OvfPackage(str(ova)):
        pass
    assert str(raised.value).startswith(not_utf8_message(ova, "latin1.ovf"))
    assert isinstance(raised.value.__cause__, UnicodeDecodeError)


def test_a_non_utf8_local_ovf_descriptor_is_refused_naming_the_file(tmp_path):
    (tmp_path / "disk.vmdk").write_bytes(b"disk")
    ovf = tmp_path / "latin1.ovf"
    ovf.write_bytes(latin_1_descriptor(["disk.vmdk"]))
    with pytest.raises(RayVsphereError) as raised, OvfPackage(str(ovf)):
        pass
    assert str(raised.value).startswith(not_utf8_message(ovf, "latin1.ovf"))


def test_a_non_utf8_ovf_descriptor_at_a_url_is_refused_naming_the_file(serve, https_server):
    url, served_ovf = serve({"disk.vmdk": b"disk"})
    served_ovf.write_bytes(latin_1_descriptor(["disk.vmdk"]))
    with pytest.raises(RayVsphereError) as raised, open_url(url, https_server):
        pass
    assert str(raised.value).startswith(not_utf8_message(url, "package.ovf"))


@pytest.mark.parametrize("href", ["../outside.vmdk", "disks/../../outside.vmdk", "/etc/hostname",
                                  "https://example.invalid/disk.vmdk", "disks\\..\\..\\outside.vmdk"])
def test_hrefs_outside_the_package_are_refused_at_a_url_too_and_nothing_is_fetched(serve, https_server, href):
    url, served_ovf = serve({"disk.vmdk": b"disk"})
    served_ovf.write_text(descriptor([href]))
    server = https_server[0]
    before = sum(server.requests.values())
    with pytest.raises(RayVsphereError) as raised, open_url(url, https_server):
        pass
    assert f"the descriptor references {href!r}, which is outside the package" in str(raised.value)
    assert sum(server.requests.values()) - before == 1  # the descriptor's GET, and no file of the hrefs


def test_a_file_referenced_twice_is_fetched_and_hashed_once_as_a_local_read_does(serve, https_server):
    url, served_ovf = serve({"disk.vmdk": b"one disk"})
    served_ovf.write_text(descriptor(["disk.vmdk", "disk.vmdk"]))
    write_manifest(served_ovf, ["disk.vmdk"])
    server = https_server[0]
    with open_url(url, https_server) as remote, OvfPackage(str(served_ovf)) as local:
        assert remote.content_hash == local.content_hash == expected_hash(served_ovf, {"disk.vmdk": b"one disk"})
    assert server.count("GET", url.split("/", 3)[3].replace("package.ovf", "disk.vmdk")) == 1


# --- check mode: the descriptor only ------------------------------------------

def ova_of(folder, disk_bytes, name="package.ova"):
    """An OVA (descriptor, manifest, one disk of disk_bytes) at folder/name, in DSP0243's member order."""
    staging = folder / f"{name}.d"
    staging.mkdir()
    ovf = write_ovf(staging, {"disk1.vmdk": disk_bytes})
    with tarfile.open(folder / name, "w", format=tarfile.USTAR_FORMAT) as archive:
        for member in (ovf, ovf.with_suffix(".mf"), staging / "disk1.vmdk"):
            archive.add(member, member.name)
    return folder / name


def test_descriptor_only_an_ova_url_costs_one_range_request_and_an_ovf_url_no_disk(https_server, tmp_path,
                                                                                    monkeypatch):
    server, folder, ca_file = https_server
    own = folder / tmp_path.name
    own.mkdir()
    ova = ova_of(own, b"\1" * (3 * 2**20))
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("RAY_VSPHERE_PROGRESS_FILE", str(events))
    url = server.url(f"{tmp_path.name}/package.ova")
    sent_before = sum(server.sent.values())
    with OvfPackage(url + "?X-Signature=SECRET", ca_path=ca_file, descriptor_only=True) as package:
        assert "A test package" in package.descriptor
        assert package.content_hash is None and not package.downloaded
    assert server.count("GET", f"{tmp_path.name}/package.ova?X-Signature=SECRET") == 1
    assert sum(server.sent.values()) - sent_before == 64 * 1024 < ova.stat().st_size
    assert "SECRET" not in events.read_text() and f"image {url}" not in events.read_text()
    assert url in events.read_text()

    # An .ovf at a URL: the descriptor and its manifest, never the disk it references.
    write_ovf(own, {"big.vmdk": b"\2" * (2 * 2**20)}, name="split.ovf")
    with OvfPackage(server.url(f"{tmp_path.name}/split.ovf"), ca_path=ca_file, descriptor_only=True) as package:
        assert "big.vmdk" in package.descriptor
    assert server.count("GET", f"{tmp_path.name}/big.vmdk") == 0
    assert server.count("GET", f"{tmp_path.name}/split.mf") == 1


def test_descriptor_only_the_manifest_still_pins_the_descriptor_and_a_damaged_disk_is_left_to_the_deploy(tmp_path):
    ova = ova_of(tmp_path, b"\1" * 4096)
    with tarfile.open(ova) as source, tarfile.open(tmp_path / "bad-disk.ova", "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            target.addfile(member, io.BytesIO(data.replace(b"\1", b"\3") if member.name == "disk1.vmdk" else data))
    with OvfPackage(str(tmp_path / "bad-disk.ova"), descriptor_only=True) as package:
        assert package.files == {}  # no disk was read, nor its header
    with pytest.raises(RayVsphereError, match=r"disk1.vmdk's SHA256 is \w+, not the \w+ manifest package.mf gives"):
        OvfPackage(str(tmp_path / "bad-disk.ova")).open()
    with tarfile.open(ova) as source, tarfile.open(tmp_path / "bad-ovf.ova", "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name.endswith(".ovf"):
                data = data.replace(b"A test package", b"A test packagE")
            target.addfile(member, io.BytesIO(data))
    with pytest.raises(RayVsphereError, match=r"package.ovf's SHA256 is \w+, not the \w+ manifest package.mf gives"):
        OvfPackage(str(tmp_path / "bad-ovf.ova"), descriptor_only=True).open()
