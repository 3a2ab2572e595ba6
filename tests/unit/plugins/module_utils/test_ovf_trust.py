"""What an image must show before a byte of it is trusted.

- Every hop of a redirect chain is checked before it is requested, not only
  the last URL: https -> http -> https is refused at its http hop.
- A manifest names files of the package only: no absolute path, no way up,
  no symlink out of the .ovf's folder, no device, and for an OVA a regular
  member of the archive; refused before any file is read (a name such as
  /etc/shadow made the error show its hash, /dev/zero never ended).
- A package without a manifest is taken only when ovf_sha256 pins it.

Packages are written here byte by byte and served by ImageServers on
127.0.0.1; the oracles are the servers' own request counts and the bytes
written, hashed with hashlib.
"""

import hashlib
import io
import tarfile

import pytest
from test_ovf_package import descriptor, write_manifest, write_ovf

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_package import OvfPackage
from testbed.image_server import ImageServer, loopback_tls

DISK = b"the disk " * 64


def write_ova(path, members):
    """A tar at path of members: (name, bytes) for a file, or a ready TarInfo (a link, a folder)."""
    with tarfile.open(path, "w") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
                continue
            name, content = member
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def manifest_text(files, extra_lines=()):
    return ("\n".join([f"SHA256({name})= {hashlib.sha256(content).hexdigest()}" for name, content in files]
                      + list(extra_lines)) + "\n").encode()


def good_ova_members(extra_lines=(), manifest=True):
    ovf = descriptor(["disk.vmdk"]).encode()
    files = [("package.ovf", ovf), ("disk.vmdk", DISK)]
    return files + ([("package.mf", manifest_text(files, extra_lines))] if manifest else [])


def opened(location, **options):
    with OvfPackage(str(location), **options) as package:
        return package


def refusal(location, **options):
    with pytest.raises(RayVsphereError) as raised:
        opened(location, **options)
    return str(raised.value)


# --- Redirects: every hop.

@pytest.fixture
def chain(tmp_path):
    """(https start URL, the http hop's server, the https server, CA file): start -> http hop -> back to https."""
    served = tmp_path / "served"
    served.mkdir()
    write_ova(served / "image.ova", good_ova_members())
    context, ca_file = loopback_tls(tmp_path)
    with ImageServer(served, tls_context=context) as secure, ImageServer(tmp_path / "nothing") as plain:
        plain.redirects["middle.ova"] = secure.url("image.ova")
        secure.redirects["start.ova"] = plain.url("middle.ova")
        yield secure.url("start.ova"), plain, secure, str(ca_file)


def test_an_https_chain_through_plain_http_and_back_is_refused_at_the_http_hop(chain):
    start, plain, secure, ca_file = chain
    hop = plain.url("middle.ova")
    for method, read in (("HEAD", lambda package: package.key()), ("GET", lambda package: package.open())):
        package = OvfPackage(start, ca_path=ca_file)
        with pytest.raises(RayVsphereError) as raised:
            read(package)
        package.close()
        assert str(raised.value).startswith(
            f"OVF source {start}: {method} {start} was redirected: {hop} is plain http, so the image could be "
            "swapped on its way: give its ovf_sha256")
        assert f"(redirects: {start} -> {hop})" in str(raised.value)
    # Refused before the http hop is asked: nothing came over plain http, and the image was never fetched.
    assert dict(plain.requests) == {}
    assert secure.count("GET", "image.ova") == secure.count("HEAD", "image.ova") == 0
    assert secure.count("GET", "start.ova") == secure.count("HEAD", "start.ova") == 1


def test_with_ovf_sha256_the_same_chain_is_followed_and_the_image_checked(chain, tmp_path):
    """Over http the pin is what protects the image, so the http hop is then allowed, as a plain http URL is."""
    start, plain, secure, ca_file = chain
    sha256 = hashlib.sha256((tmp_path / "served" / "image.ova").read_bytes()).hexdigest()
    with OvfPackage(start, ca_path=ca_file, sha256=sha256) as package:
        assert package.content_hash == sha256
    assert plain.count("GET", "middle.ova") == 1 and secure.count("GET", "image.ova") == 1
    assert f"its SHA-256 is {sha256}, not the {'0' * 64} ovf_sha256 gives" in refusal(
        start, ca_path=ca_file, sha256="0" * 64)


def test_an_https_to_https_redirect_is_still_followed(chain):
    start, plain, secure, ca_file = chain
    secure.redirects["start.ova"] = secure.url("image.ova")
    with OvfPackage(start, ca_path=ca_file) as package:
        assert package.files == {"disk.vmdk": len(DISK)}
    assert OvfPackage(start, ca_path=ca_file).key().startswith(f"{start} ")  # the HEAD's validators, of the URL asked
    assert dict(plain.requests) == {}


@pytest.mark.parametrize("target", ["file:///etc/hostname", "ftp://127.0.0.1/image.ova"])
def test_a_redirect_to_a_url_that_is_not_http_is_refused(chain, target):
    """urllib's opener reads file:// too: a redirect must not make this machine's own file the image."""
    start, _, secure, ca_file = chain
    secure.redirects["start.ova"] = target
    for sha256 in (None, "0" * 64):  # a pin does not make another scheme fine
        assert refusal(start, ca_path=ca_file, sha256=sha256) == (
            f"OVF source {start}: GET {start} was redirected to {target}, which is not an http(s) URL "
            f"(redirects: {start} -> {target})")


def test_a_redirect_loop_ends_with_an_error_naming_it(chain):
    start, _, secure, ca_file = chain
    secure.redirects["start.ova"] = secure.url("start.ova")
    assert f"OVF source {start}: GET {start} was redirected more than 10 times" in refusal(start, ca_path=ca_file)


# --- Manifest names: inside the package, regular files only.

OUTSIDE_NAMES = ["/etc/hostname", "/dev/zero", "../outside.vmdk", "disks/../../outside.vmdk", "https://x.invalid/a",
                 "missing.vmdk"]


@pytest.mark.timeout(30)  # /dev/zero, read to its end, never ends
@pytest.mark.parametrize("name", OUTSIDE_NAMES)
def test_an_ova_manifest_naming_what_is_not_its_member_is_refused_without_reading_it(tmp_path, name):
    ova = write_ova(tmp_path / "named.ova", good_ova_members([f"SHA256({name})= {'0' * 64}"]))
    (tmp_path / "outside.vmdk").write_bytes(b"outside")
    message = refusal(ova)
    assert message == (f"OVF source {ova}: manifest package.mf lists {name!r}, which is not a file of the package: "
                       "a manifest names the package's own files by relative path")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", OUTSIDE_NAMES + ["zero", "hosts", "disks"])
def test_an_ovf_manifest_naming_what_is_outside_its_folder_is_refused_without_reading_it(tmp_path, name):
    folder = tmp_path / "package"
    folder.mkdir()
    (tmp_path / "outside.vmdk").write_bytes(b"outside")
    (folder / "zero").symlink_to("/dev/zero")
    (folder / "hosts").symlink_to("/etc/hosts")
    (folder / "disks").mkdir()
    ovf = write_ovf(folder, {"disk.vmdk": DISK})
    write_manifest(ovf, ["disk.vmdk"], [f"SHA256({name})= {'0' * 64}"])
    message = refusal(ovf)
    assert message == (f"OVF source {ovf}: manifest package.mf lists {name!r}, which is not a file of the package: "
                       "a manifest names the package's own files by relative path")


def test_no_hash_of_a_file_outside_the_package_is_ever_shown(tmp_path):
    """The oracle: a wrong digest for /etc/hostname once made the error print its real one."""
    ova = write_ova(tmp_path / "oracle.ova", good_ova_members([f"SHA256(/etc/hostname)= {'0' * 64}"]))
    with open("/etc/hostname", "rb") as handle:
        real = hashlib.sha256(handle.read()).hexdigest()
    assert real not in refusal(ova)


def test_a_symlink_inside_the_folder_to_a_file_inside_it_is_a_file_of_the_package(tmp_path):
    ovf = write_ovf(tmp_path, {"disk.vmdk": DISK})
    (tmp_path / "same-disk.vmdk").symlink_to("disk.vmdk")
    write_manifest(ovf, ["disk.vmdk", "same-disk.vmdk"])
    assert opened(ovf).files == {"disk.vmdk": len(DISK)}


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member", [link_member("alias.vmdk", "/etc/hostname"), link_member("alias.vmdk", "disk.vmdk"),
                                    link_member("alias.vmdk", "disk.vmdk", tarfile.LNKTYPE)],
                         ids=["symlink-out", "symlink-in", "hard-link"])
def test_an_ova_manifest_naming_a_link_member_is_refused(tmp_path, member):
    files = good_ova_members(manifest=False)
    ova = write_ova(tmp_path / "linked.ova", files + [member, ("package.mf", manifest_text(files, [
        f"SHA256(alias.vmdk)= {hashlib.sha256(DISK).hexdigest()}"]))])
    assert "manifest package.mf lists 'alias.vmdk', which is not a file of the package" in refusal(ova)


def test_an_ovf_href_that_is_a_symlink_out_of_the_folder_is_refused(tmp_path):
    """Its content would be uploaded as the node's disk: a file of the machine's own, not of the package."""
    folder = tmp_path / "package"
    folder.mkdir()
    (tmp_path / "outside.vmdk").write_bytes(b"outside")
    ovf = write_ovf(folder, {"disk.vmdk": DISK})
    (folder / "disk.vmdk").unlink()
    (folder / "disk.vmdk").symlink_to(tmp_path / "outside.vmdk")
    assert refusal(ovf) == (f"OVF source {ovf}: the descriptor references disk.vmdk, which is not a regular file "
                            "inside the package (a symlink out of its folder, a device or a folder)")


@pytest.mark.timeout(30)
def test_a_manifest_that_is_a_device_or_too_large_is_refused(tmp_path):
    ovf = write_ovf(tmp_path, {"disk.vmdk": DISK})
    ovf.with_suffix(".mf").unlink()
    ovf.with_suffix(".mf").symlink_to("/dev/zero")
    assert refusal(ovf) == (f"OVF source {ovf}: manifest package.mf is not a regular file inside the package (a link, "
                            "a symlink out of its folder, a device or a folder)")
    files = good_ova_members(manifest=False)
    ova = write_ova(tmp_path / "large.ova", files + [("package.mf", manifest_text(files) + b"\n" * (1024 * 1024))])
    assert refusal(ova) == (f"OVF source {ova}: manifest package.mf is larger than 1048576 bytes, more than a list of "
                            "the package's files")


# --- A manifest, or a pin.

def test_an_ova_without_a_manifest_is_refused_unless_ovf_sha256_pins_it(tmp_path):
    ova = write_ova(tmp_path / "bare.ova", good_ova_members(manifest=False))
    assert refusal(ova) == (
        f"OVF source {ova}: no manifest (package.mf) beside the descriptor, so nothing shows the image is the one "
        "its maker wrote: give its ovf_sha256 (sha256sum of the OVA; of an .ovf, see ovf_sha256), or export it with "
        "a manifest (ovftool writes one)")
    sha256 = hashlib.sha256(ova.read_bytes()).hexdigest()
    assert opened(ova, sha256=sha256).content_hash == sha256
    assert "its SHA-256 is" in refusal(ova, sha256="1" * 64)


def test_an_ovf_folder_without_a_manifest_is_refused_unless_ovf_sha256_pins_it(tmp_path):
    ovf = write_ovf(tmp_path, {"disk.vmdk": DISK})
    ovf.with_suffix(".mf").unlink()
    assert refusal(ovf).startswith(f"OVF source {ovf}: no manifest (package.mf) beside the descriptor")
    sha256 = hashlib.sha256(ovf.read_bytes() + DISK).hexdigest()
    assert opened(ovf, sha256=sha256).content_hash == sha256


@pytest.fixture
def https_folder(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    context, ca_file = loopback_tls(tmp_path)
    with ImageServer(folder, tls_context=context) as server:
        yield server, folder, str(ca_file)


def test_an_ovf_at_a_url_is_checked_against_the_manifest_beside_it(https_folder):
    server, folder, ca_file = https_folder
    ovf = write_ovf(folder, {"disk.vmdk": DISK})
    url = server.url("package.ovf")
    assert opened(url, ca_path=ca_file).files == {"disk.vmdk": len(DISK)}
    assert server.count("GET", "package.mf") == 1
    (folder / "disk.vmdk").write_bytes(DISK[:-1] + b"!")  # altered on the server, the manifest left as it was
    assert "disk.vmdk's SHA256 is" in refusal(url, ca_path=ca_file)
    ovf.with_suffix(".mf").unlink()  # the server answers 404
    assert refusal(url, ca_path=ca_file).startswith(f"OVF source {url}: no manifest (package.mf) beside the descriptor")
