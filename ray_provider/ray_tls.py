"""Ray's TLS on the provider path: the cluster's CA, kept in the provider's state beside the token, mounted on every node.

`ray up` mounts the same files on every node (the head's autoscaler mounts
the head's copies on the workers), and each node makes its own certificate
for its addresses when Ray starts, with the mounted script (module_utils/
_ray_tls.py says why). The CA is derived from the cluster's key like the
token: a second `ray up` writes the same bytes, so Ray sees no changed file
mount and restarts nothing.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_tls

STATE_FOLDER = "ray-tls"


def tls_file_mounts(state_dir, cluster_key):
    """{path on the nodes: path here} of the CA and the script that makes a node's certificate."""
    folder = state_dir / cluster_key.cluster_name / STATE_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem, cert_pem = _ray_tls.cluster_ca(cluster_key.ray_tls_ca_secret(), cluster_key.cluster_name)
    _write_if_changed(folder / _ray_tls.CA_KEY, key_pem)
    _write_if_changed(folder / _ray_tls.CA_CERT, cert_pem)
    with open(_ray_tls.__file__, "rb") as script:
        _write_if_changed(folder / _ray_tls.MINT_SCRIPT, script.read())
    return {f"{_ray_tls.TLS_DIR_ON_NODES}/{name}": str(folder / name)
            for name in (_ray_tls.CA_KEY, _ray_tls.CA_CERT, _ray_tls.MINT_SCRIPT)}


def _write_if_changed(path, data):
    """0600 (rsync keeps the mode on the nodes); left alone when it holds `data` already."""
    if not (path.exists() and path.read_bytes() == data):
        _ray_tls.write_private(str(path), data)
