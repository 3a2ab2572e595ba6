"""Where Ansible keeps its per-user state in the testbed's own processes: never the user's ~/.ansible.

Set it before anything imports ansible: ansible-core makes its local temp
folder ($ANSIBLE_HOME/tmp) on import.
"""

import os


def keep_ansible_state_in(folder):
    """Point this process and its children's Ansible state at `folder`; the folder.

    ANSIBLE_HOME moves galaxy_cache, collections and the local temp; SSH's
    control sockets and local-connection module temps default to
    ~/.ansible/{cp,tmp} whatever ANSIBLE_HOME says. The control path stays
    short: a Unix socket's path has at most 107 bytes.
    """
    os.environ.update(ANSIBLE_HOME=str(folder), ANSIBLE_SSH_CONTROL_PATH_DIR=f"{folder}/cp",
                      ANSIBLE_REMOTE_TMP=f"{folder}/remote-tmp")
    return str(folder)
