# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which node templates this cluster's key made: their names and the identity they record.

A template is cloned into every node, so one planted in the VM folder (a VM
named like ours, recording our image's hash) would run its maker's code on
every node. node_deploy therefore uses, and template_prune removes, only
templates whose extraConfig records an identity that only a holder of the
cluster's private key can compute (_ray_auth.derive), bound to the
template's name and, once made, to its managed object id: vCenter assigns
that id and never gives it to another VM, so a value read off one of our
templates proves nothing for any other VM, even one made under the same name
after ours was removed.

While a template is being made its moid is not known yet (the import itself
writes the record, so no moment exists in which the template is not ours), so
it records the name-bound value; a VM with only that is never cloned from,
only waited for or, once its maker is dead, removed and made again.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ray_auth, _records

TEMPLATE_PREFIX = "ray-template-"
# Hex digits of the key id in a template's name: clusters with other keys sharing a
# folder get other names, so neither finds the other's template in its way.
KEY_ID_LENGTH = 8
# Hex digits of the image's content hash in a template's name.
HASH_LENGTH = 12


def read_cluster_key(path):
    """The secret of the cluster's private key at path (the module option cluster_key_file)."""
    try:
        return _ray_auth.ClusterKey.from_file(path, cluster_name="").secret
    except _ray_auth.ClusterKeyError as error:
        raise RayVsphereError(str(error))


class TemplateIdentity(object):
    """The names and identities of the templates one cluster key makes."""

    def __init__(self, key_secret):
        """key_secret: the cluster key's secret (_ray_auth.ClusterKey.secret)."""
        self._key = key_secret
        self.key_id = _ray_auth.derive(key_secret, _ray_auth.PURPOSE_TEMPLATE_IDENTITY, "key id")[:KEY_ID_LENGTH]

    @classmethod
    def from_file(cls, path):
        return cls(read_cluster_key(path))

    def name(self, content_hash):
        """ray-template-<12 hex of the image's SHA-256>-<key id>: 34 characters, far below vCenter's 80."""
        return "%s%s-%s" % (TEMPLATE_PREFIX, content_hash[:HASH_LENGTH], self.key_id)

    def being_made(self, name):
        """The record the import writes on a template it is making."""
        return _ray_auth.derive(self._key, _ray_auth.PURPOSE_TEMPLATE_IDENTITY, name)

    def made(self, name, moid):
        """The record a made template carries, written before MarkAsTemplate."""
        return _ray_auth.derive(self._key, _ray_auth.PURPOSE_TEMPLATE_IDENTITY, name, moid)

    def is_ours(self, name, moid, extra_config, is_template):
        """Whether a VM of this name, moid and {extraConfig key: value} is a template this key made (or makes).

        A template (config.template) must carry the moid-bound record; a VM
        still being made may carry either, as MarkAsTemplate is its last step.
        """
        recorded = extra_config.get(_records.TEMPLATE_IDENTITY)
        if _ray_auth.matches(self.made(name, moid), recorded):
            return True
        return not is_template and _ray_auth.matches(self.being_made(name), recorded)
