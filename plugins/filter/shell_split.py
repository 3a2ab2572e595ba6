# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: shell_split
short_description: Split a command line into arguments by the shell's quoting rules
version_added: 0.2.0
description:
  - "Splits a string into arguments as a POSIX shell would (Python's C(shlex.split)), so a quoted argument with
    spaces, such as C(--resources='{\"GPU\": 1}'), stays one argument. No variable or glob expansion happens."
  - A list is returned as it is, so a variable may be given either as a list of arguments (a vars file) or as
    one line of text (an AWX survey answer). An empty string or a null gives an empty list.
author:
  - ray-vsphere maintainers (@ray-vsphere)
options:
  _input:
    description: A command line, or a list of arguments.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Start options from a survey answer
  ansible.builtin.debug:
    msg: "{{ \"--num-cpus=4 --resources='{\\\"GPU\\\": 1}'\" | ray_vsphere.cluster.shell_split }}"
  # ['--num-cpus=4', '--resources={"GPU": 1}']
"""

RETURN = r"""
_value:
  description: The arguments.
  type: list
  elements: str
"""

import shlex

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text


def shell_split(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [to_text(item) for item in value]
    if not isinstance(value, str):
        raise AnsibleFilterError("shell_split expects a string or a list, not %s" % type(value).__name__)
    try:
        return shlex.split(value)
    except ValueError as error:  # an unclosed quote
        raise AnsibleFilterError("cannot split %r by shell quoting rules: %s" % (value, error))


class FilterModule(object):
    def filters(self):
        return {"shell_split": shell_split}
