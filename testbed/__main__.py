"""`python -m testbed`: the testbed's command line (a development tool, not in the product wheel)."""

import shutil
import tempfile

from testbed.ansible_state import keep_ansible_state_in

# The testbed's own Ansible runs leave nothing in ~/.ansible (see testbed.ansible_state).
ansible_home = keep_ansible_state_in(tempfile.mkdtemp(prefix="ray-vsphere-ansible-home-"))
try:
    from testbed.cli import main  # imports ansible: after its state is placed

    main()
finally:
    shutil.rmtree(ansible_home, ignore_errors=True)
