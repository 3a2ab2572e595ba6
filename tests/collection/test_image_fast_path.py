"""A deploy whose template exists neither downloads nor hashes the image; the image's own TLS settings.

The images are served from loopback by http.server in a thread, which counts
every request by method and path: a template found again costs one HEAD (or,
with ovf_sha256, no request at all), never a GET. They are served over https
with a certificate of a testbed CA (given as ovf_ca_path), except where plain
http with ovf_sha256 is the point. Each test serves its own variant of the
test OVA (an extra tar member), so each starts without a template and the
counts are its own.
"""

import hashlib
import io
import json
import os
import shutil
import tarfile

import pytest
from conftest import deploy_task
from pyVmomi import vim

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _image_hash_cache
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._template_identity import TemplateIdentity
from testbed import vsphere
from testbed.image_server import ImageServer, loopback_tls


def ova_variant(test_ova, target, note):
    """The test OVA plus a notes.txt member saying `note`: another image, as valid as the first."""
    with tarfile.open(test_ova) as source, tarfile.open(target, "w") as archive:
        for member in source.getmembers():
            archive.addfile(member, source.extractfile(member))
        data = note.encode()
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return target


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_record(service_instance, template_name):
    vm = vsphere.find_by_name(service_instance, vim.VirtualMachine, template_name)
    extra = vsphere.read_properties(service_instance, vm, ["config.extraConfig"])["config.extraConfig"]
    return {option.key: option.value for option in extra if option.key.startswith("ray-vsphere.image-")}


@pytest.fixture
def https(tmp_path):
    """(server SSLContext, CA file) of a fresh testbed CA, for 127.0.0.1."""
    folder = tmp_path / "tls"
    folder.mkdir()
    return loopback_tls(folder)


def test_a_second_deploy_from_the_same_url_and_a_check_run_make_no_get(
        play, test_ova, tmp_path, service_instance, vm_names, https, cluster_key_file):
    context, ca_file = https
    ova = ova_variant(test_ova, tmp_path / "node.ova", "same url")
    with ImageServer(tmp_path, context) as server:
        url = server.url("node.ova")
        trusted = dict(ovf_ca_path=str(ca_file))
        first = play([deploy_task("fast", url, names=["fast-0"], **trusted)]).result
        assert not first["failed"], first
        assert (server.count("HEAD", "node.ova"), server.count("GET", "node.ova")) == (1, 1)
        image = first["image"]
        assert image["downloaded"] is True
        assert image["sha256"] == sha256_of(ova)
        key_id = TemplateIdentity.from_file(cluster_key_file).key_id
        assert image["template"] == f"ray-template-{sha256_of(ova)[:12]}-{key_id}"
        assert image["key"].startswith(f"{url} last-modified=") and image["key"].endswith(f"length={ova.stat().st_size}")
        assert image_record(service_instance, image["template"]) == {
            "ray-vsphere.image-sha256": sha256_of(ova), "ray-vsphere.image-key": image["key"]}

        # The OVF's property names come from the template: hostname is one, so no error.
        second = play([deploy_task("fast", url, names=["fast-1"], ovf_properties={"hostname": "fast-1"},
                                   **trusted)]).result
        assert not second["failed"], second
        assert second["created"] == ["fast-1"]
        assert second["image"] == dict(image, downloaded=False)
        before_check = vm_names()
        check = play([deploy_task("fast", url, names=["fast-2"], **trusted)], check=True).result
        assert not check["failed"], check
        assert (check["changed"], check["created"], check["image"]) == (True, ["fast-2"], dict(image, downloaded=False))
        assert vm_names() == before_check
        assert (server.count("HEAD", "node.ova"), server.count("GET", "node.ova")) == (3, 1)
    assert [name for name in vm_names() if name.startswith("ray-template-")].count(image["template"]) == 1


def test_a_changed_image_at_the_same_url_makes_a_new_template(play, test_ova, tmp_path, service_instance, https,
                                                              cluster_key_file):
    context, ca_file = https
    served = tmp_path / "served"
    served.mkdir()
    first_ova = ova_variant(test_ova, tmp_path / "v1.ova", "version 1")
    second_ova = ova_variant(test_ova, tmp_path / "v2.ova", "version 2, longer")
    shutil.copy(first_ova, served / "node.ova")
    with ImageServer(served, context) as server:
        url = server.url("node.ova")
        first = play([deploy_task("changing", url, names=["changing-0"], ovf_ca_path=str(ca_file))]).result
        assert not first["failed"], first
        shutil.copy(second_ova, served / "node.ova")  # another size, another Last-Modified
        second = play([deploy_task("changing", url, names=["changing-1"], ovf_ca_path=str(ca_file))]).result
        assert not second["failed"], second
        assert server.count("GET", "node.ova") == 2
    assert second["image"]["downloaded"] is True
    assert second["image"]["key"] != first["image"]["key"]
    assert (first["image"]["sha256"], second["image"]["sha256"]) == (sha256_of(first_ova), sha256_of(second_ova))
    key_id = TemplateIdentity.from_file(cluster_key_file).key_id
    assert second["image"]["template"] == f"ray-template-{sha256_of(second_ova)[:12]}-{key_id}" \
        != first["image"]["template"]
    assert image_record(service_instance, second["image"]["template"])["ray-vsphere.image-sha256"] == sha256_of(second_ova)


def test_with_ovf_sha256_a_mismatch_fails_before_anything_is_created_and_a_match_needs_no_request(
        play, test_ova, tmp_path, vm_names):
    ova = ova_variant(test_ova, tmp_path / "pinned.ova", "pinned")
    wrong = "0" * 64
    with ImageServer(tmp_path) as server:
        url = server.url("pinned.ova")
        before = vm_names()
        mismatch = play([deploy_task("pinned", url, count=2, request_id="bad", ovf_sha256=wrong)]).result
        assert mismatch["failed"]
        assert f"OVF source {url}: its SHA-256 is {sha256_of(ova)}, not the {wrong} ovf_sha256 gives" in mismatch["msg"]
        assert vm_names() == before

        pinned = dict(names=["pinned-0"], ovf_sha256=sha256_of(ova).upper())
        first = play([deploy_task("pinned", url, **pinned)]).result
        assert not first["failed"], first
        assert first["image"]["key"] == f"sha256:{sha256_of(ova)}"
        requests_after_first = dict(server.requests)
        again = play([deploy_task("pinned", url, **dict(pinned, names=["pinned-1"]))]).result
        assert not again["failed"], again
        assert again["image"] == dict(first["image"], downloaded=False)
        assert dict(server.requests) == requests_after_first  # the template is found by the digest alone
    assert requests_after_first == {("GET", "/pinned.ova"): 2}  # the mismatch's and the import's


def test_plain_http_without_ovf_sha256_is_refused_before_anything_is_made(play, test_ova, tmp_path, vm_names):
    ova_variant(test_ova, tmp_path / "plain.ova", "plain http")
    before = vm_names()
    with ImageServer(tmp_path) as server:
        url = server.url("plain.ova")
        for clone_from_template in (True, False):
            result = play([deploy_task("plain", url, count=2, request_id="plain",
                                       clone_from_template=clone_from_template)]).result
            assert result["failed"]
            assert (f"ovf {url} is plain http, so the image could be swapped on its way: give its ovf_sha256 "
                    "(the download is then checked against it), or serve it over https") in result["msg"]
        assert dict(server.requests) == {}  # refused before any request
    assert vm_names() == before


def test_an_https_image_redirected_to_plain_http_is_refused(play, test_ova, tmp_path, https, vm_names):
    """urllib follows https -> http redirects: the download would come unprotected after all."""
    import http.server
    import threading

    context, ca_file = https
    ova_variant(test_ova, tmp_path / "moved.ova", "moved to http")
    with ImageServer(tmp_path) as plain:
        target = plain.url("moved.ova")

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()

            do_GET = do_HEAD

            def log_message(self, *args):
                pass

        redirector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        redirector.socket = context.wrap_socket(redirector.socket, server_side=True)
        thread = threading.Thread(target=redirector.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"https://127.0.0.1:{redirector.server_port}/moved.ova"
            before = vm_names()
            for clone_from_template in (True, False):  # the HEAD of the fast path, the GET of an import
                result = play([deploy_task("moved", url, names=["moved-0"], ovf_ca_path=str(ca_file),
                                           clone_from_template=clone_from_template)]).result
                assert result["failed"]
                method = "HEAD" if clone_from_template else "GET"
                assert f"OVF source {url}: {method} {url} was redirected: {target} is plain http" in result["msg"]
            assert vm_names() == before
        finally:
            redirector.shutdown()
            redirector.server_close()
            thread.join()


def test_an_ovf_sha256_that_is_not_a_digest_is_refused(play, test_ova, vm_names):
    before = vm_names()
    result = play([deploy_task("pinned", test_ova, names=["pinned-x"], ovf_sha256="abc")]).result
    assert result["failed"]
    assert "ovf_sha256 must be a SHA-256 in hex (64 digits, as sha256sum prints it), not 'abc'" in result["msg"]
    assert vm_names() == before


# --- the image's TLS settings ------------------------------------------------

def test_an_https_image_is_verified_against_ovf_ca_path_whatever_vcenters_validate_certs_says(
        play, vcsim, test_ova, tmp_path, https, vm_names):
    context, ca_file = https
    served = tmp_path / "served"
    served.mkdir()
    ova_variant(test_ova, served / "tls.ova", "over https")
    before = vm_names()
    with ImageServer(served, context) as server:
        url = server.url("tls.ova")
        # vCenter's CA (VMWARE_CA_PATH) is not the image server's: ca_path is for vCenter only.
        assert vcsim.endpoint.environment()["VMWARE_CA_PATH"] != str(ca_file)
        untrusted = play([deploy_task("tls", url, names=["tls-0"])]).result
        assert untrusted["failed"]
        assert f"OVF source {url}: TLS with {url} failed (HEAD): " in untrusted["msg"]
        assert "certificate verify failed" in untrusted["msg"]
        assert "Give the CA bundle that signed the server's certificate in ovf_ca_path, or set ovf_validate_certs: false" \
            in untrusted["msg"]
        assert vm_names() == before

        trusted = play([deploy_task("tls", url, names=["tls-0"], ovf_ca_path=str(ca_file))]).result
        assert not trusted["failed"], trusted
        assert trusted["image"]["downloaded"] is True
        assert server.count("GET", "tls.ova") == 1

        unchecked = play([deploy_task("tls", url, names=["tls-1"], ovf_validate_certs=False)]).result
        assert not unchecked["failed"], unchecked
        assert unchecked["image"]["downloaded"] is False  # the template is found by the https URL's key

        # ...and ovf_validate_certs: false does not reach vCenter's check, nor is the image's CA vCenter's.
        image_ca_for_vcenter = dict(vcsim.endpoint.environment(), VMWARE_CA_PATH=str(ca_file))
        refused = play([deploy_task("tls", url, names=["tls-2"], ovf_validate_certs=False)],
                       env=image_ca_for_vcenter).result
        assert refused["failed"]
        assert f"TLS with vCenter 127.0.0.1:{vcsim.endpoint.port} failed" in refused["msg"]
        assert server.count("GET", "tls.ova") == 1


def test_a_missing_ovf_ca_path_is_named(play, test_ova, tmp_path):
    result = play([deploy_task("tls", "https://127.0.0.1:9/tls.ova", names=["tls-x"],
                               ovf_ca_path=str(tmp_path / "no-such-ca.pem"))]).result
    assert result["failed"]
    assert f"ovf_ca_path {tmp_path / 'no-such-ca.pem'}: no such file" in result["msg"]


# --- check mode reads the descriptor only ------------------------------------

def padded_variant(test_ova, target, mib):
    """The test OVA with `mib` MiB of random bytes in a last member: an image whose size the check must not pay."""
    padding = target.parent / "padding.bin"
    padding.write_bytes(os.urandom(mib * 2**20))
    with tarfile.open(test_ova) as source, tarfile.open(target, "w") as archive:
        for member in source.getmembers():
            archive.addfile(member, source.extractfile(member))
        archive.add(padding, "padding.bin")
    padding.unlink()
    return target


def progress_events(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_check_run_reads_the_ova_descriptor_by_range_requests_and_a_server_without_ranges_gets_a_warning(
        play, vcsim, test_ova, tmp_path, vm_names, https):
    context, ca_file = https
    ova = padded_variant(test_ova, tmp_path / "big.ova", 8)
    size = ova.stat().st_size
    events = tmp_path / "progress.jsonl"
    env = dict(vcsim.endpoint.environment(), RAY_VSPHERE_PROGRESS_FILE=str(events))
    before = vm_names()
    with ImageServer(tmp_path, context) as server:
        check = play([deploy_task("ranged", server.url("big.ova"), names=["ranged-0"], ovf_ca_path=str(ca_file))],
                     env=env, check=True).result
        assert not check["failed"], check
        assert (check["created"], check["image"]["downloaded"]) == (["ranged-0"], False)
        # The server's own counts: one HEAD (the template lookup), GETs of ranges only, a fraction of the file.
        assert server.count("HEAD", "big.ova") == 1
        assert 1 <= server.count("GET", "big.ova") <= 2, dict(server.requests)
        assert server.bytes_sent("big.ova") <= 256 * 1024 < size
    assert vm_names() == before
    [read] = [event for event in progress_events(events) if event["event"] == "image"]
    assert read["step"].startswith("checked its OVF descriptor only (1 Range request(s)"), read

    events.unlink()
    with ImageServer(tmp_path, context, honour_range=False) as server:  # a server that answers Range with 200
        check = play([deploy_task("ranged", server.url("big.ova"), names=["ranged-0"], ovf_ca_path=str(ca_file))],
                     env=env, check=True).result
        assert not check["failed"], check
        assert check["image"]["downloaded"] is True
        assert server.count("GET", "big.ova") == 2  # the Range request, answered whole and closed; the full read
        assert server.bytes_sent("big.ova") >= size
    downloads = [event for event in progress_events(events) if event["event"] == "download"]
    assert downloads[-1]["sent"] == downloads[-1]["total"] == size, downloads  # the whole read shows its progress
    [warning] = [event for event in progress_events(events) if event.get("warning")]
    assert "the server ignored the Range request (it answered 200, with the whole file): reading the whole image " \
           "to check it" in warning["step"]
    assert vm_names() == before


def test_a_check_run_refuses_a_descriptor_the_manifest_does_not_match_and_a_cached_local_image_of_another_sha256(
        play, test_ova, tmp_path, vm_names, https):
    context, ca_file = https
    altered = tmp_path / "altered.ova"
    with tarfile.open(test_ova) as source, tarfile.open(altered, "w") as archive:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name.endswith(".ovf"):
                data = data.replace(b"</Envelope>", b"<!-- altered --></Envelope>")
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    before = vm_names()
    with ImageServer(tmp_path, context) as server:
        check = play([deploy_task("altered", server.url("altered.ova"), names=["altered-0"],
                                  ovf_ca_path=str(ca_file))], check=True).result
        assert server.bytes_sent("altered.ova") < altered.stat().st_size
    assert check["failed"]
    assert "ray-test-appliance.ovf's SHA256 is" in check["msg"] and "the image is damaged or was altered" in check["msg"]

    # A local image: its hash is known without reading it once a deploy hashed it (the hash cache), and checked.
    local = ova_variant(test_ova, tmp_path / "local.ova", "local, hashed once")
    first = play([deploy_task("cached", local, names=["cached-0"])]).result
    assert not first["failed"], first
    wrong = "0" * 64
    check = play([deploy_task("cached", local, names=["cached-1"], ovf_sha256=wrong)], check=True).result
    assert check["failed"]
    assert f"its SHA-256 is {sha256_of(local)}, not the {wrong} ovf_sha256 gives" in check["msg"]
    assert vm_names() == sorted(before + ["cached-0", first["image"]["template"]])


# --- the hash cache of local images, in process -----------------------------

def test_a_local_image_is_hashed_once_while_unchanged_and_again_when_it_changes(tmp_path, test_ova):
    image = tmp_path / "local.ova"
    shutil.copy(test_ova, image)
    cache = _image_hash_cache.HashCache(str(tmp_path / "cache" / "ovf-sha256.json"))
    reads = []

    def compute(paths):
        reads.append(paths)
        return _image_hash_cache.hash_files(paths)

    assert cache.sha256([str(image)], compute) == sha256_of(image)
    assert cache.sha256([str(image)], compute) == sha256_of(image)
    assert len(reads) == 1
    with open(image, "ab") as handle:  # same path, new content (and size, ctime)
        handle.write(b"\0" * 512)
    assert cache.sha256([str(image)], compute) == sha256_of(image)
    assert len(reads) == 2
    entries = json.loads((tmp_path / "cache" / "ovf-sha256.json").read_text())
    assert len(entries) == 2


def test_the_hash_cache_keeps_the_newest_entries_and_lives_in_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = _image_hash_cache.HashCache()
    assert cache.path == str(tmp_path / "xdg" / "ray-vsphere" / "ovf-sha256.json")
    files = []
    for index in range(_image_hash_cache.HashCache.MAX_ENTRIES + 5):
        files.append(tmp_path / f"image-{index}.ova")
        files[-1].write_text(str(index))
        cache.sha256([str(files[-1])], _image_hash_cache.hash_files)
    entries = json.loads(open(cache.path).read())
    assert len(entries) == _image_hash_cache.HashCache.MAX_ENTRIES
    kept = {json.loads(key)[0][0] for key in entries}
    assert os.path.realpath(files[-1]) in kept and os.path.realpath(files[0]) not in kept


def test_a_cache_folder_that_cannot_be_written_is_not_used(tmp_path, test_ova):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    cache = _image_hash_cache.HashCache(str(blocker / "ovf-sha256.json"))
    assert cache.sha256([str(test_ova)], _image_hash_cache.hash_files) == sha256_of(test_ova)
