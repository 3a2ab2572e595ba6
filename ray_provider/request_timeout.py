"""The range of the vCenter request timeout the provider and its runs' modules use (vcenter_request_timeout).

Any value in it keeps a slow boot joining, whatever ip_timeout is: the IP
wait's long poll is derived from it (_waiter.update_wait_seconds, well below
it), a poll vCenter does not answer in time counts as no change, and a create
run, given ip_timeout + CREATE_RUN_MARGIN_S, still has room for a few calls
vCenter never answers (each costs one request timeout) after the IP came.
"""

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._waiter import update_wait_seconds

from ray_provider.runs import CREATE_RUN_MARGIN_S

MIN_REQUEST_TIMEOUT_S = 1
MAX_REQUEST_TIMEOUT_S = CREATE_RUN_MARGIN_S // 4


def request_timeout_problem(timeout, source):
    """Why a request timeout (an int) is refused, naming where it came from; None if it is in range."""
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        return None  # its type is the config check's to name
    if timeout < MIN_REQUEST_TIMEOUT_S:
        return f"{source}: must be at least {MIN_REQUEST_TIMEOUT_S}, not {timeout}"
    if timeout > MAX_REQUEST_TIMEOUT_S:
        return (f"{source}: {timeout} s is more than {MAX_REQUEST_TIMEOUT_S} s: a create run gets ip_timeout + "
                f"{CREATE_RUN_MARGIN_S} s, which must hold a few calls vCenter does not answer, each costing this "
                f"long (a vCenter slower than {MAX_REQUEST_TIMEOUT_S} s is down). A longer timeout would not help a "
                f"slow boot: the wait for a node's IP asks vCenter to answer within "
                f"{update_wait_seconds(MAX_REQUEST_TIMEOUT_S)} s whatever it is")
    return None
