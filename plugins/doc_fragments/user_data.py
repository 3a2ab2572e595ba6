# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # node_deploy's user_data (plugins/module_utils/_user_data.py): what it takes, how it is merged, where it goes.
    DOCUMENTATION = r"""
options:
  user_data:
    description:
      - Your own cloud-init user-data for every node, a cloud-config mapping, or text as cloud-init takes it
        (a C(#cloud-config) document, a C(#!) script, any other type cloud-init knows by its first line such as
        C(#cloud-boothook) or C(#include), or a MIME multipart message with a C(MIME-Version) header).
      - Merged with the node's own cloud-config (O(ssh_host_key), O(service_users)) into one MIME multipart
        message, your parts first and kept with their types and headers (a C(Merge-Type) of yours still applies
        among your parts), then the node's own, whose C(Merge-Type) is
        list(append)+dict(no_replace,recurse_list)+str().
        So both apply; lists are appended (your C(users), then the service users) and your other keys (C(runcmd),
        C(write_files)...) stay as you wrote them.
      - What would undo the node's own is refused before anything is made, with what to change. With
        O(ssh_host_key), your cloud-config may not set C(ssh_keys), C(ssh_deletekeys)
        or C(ssh_genkeytypes) (the node must offer only the host key recorded for it). With O(service_users), your
        C(users) must be a list and may not name a service user (they stay without sudo). Parts that cloud-init
        fetches or renders at boot (C(#include), jinja templates, archives) cannot be checked here.
      - Goes to every datasource the image's cloud-init may read, base64 as both take it; C(guestinfo.userdata)
        (cloud-init's VMware datasource, with C(guestinfo.userdata.encoding)) and, where the OVF declares it,
        the OVF property C(user-data) (its OVF datasource). Both say the same, byte for byte.
      - Readable, like the rest of the user-data, by vCenter users who may read the VM's configuration and by
        processes in the guest. With O(ssh_host_key), both copies are replaced once the node has answered with its
        host key (O(ray_vsphere.cluster.node_tags#module:remove_host_private_keys)); cloud-init has read them at the
        node's first boot by then. Do not rely on them at later boots.
      - Text that cloud-init would ignore (no known first line, no MIME header) is an error.
    type: raw
"""
