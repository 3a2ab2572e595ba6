"""What the session's leftover check counts, on a home folder made for the test."""

from testbed import leftovers


def test_a_collection_installed_into_the_users_home_counts_as_left_behind(monkeypatch, tmp_path):
    """The session's leftover check sees ~/.ansible/collections/ansible_collections/ray_vsphere appear."""
    home_ansible, home_provider = tmp_path / ".ansible", tmp_path / ".ray-vsphere"
    monkeypatch.setattr(leftovers, "HOME_FOLDERS", (home_ansible, home_provider))
    before = leftovers.snapshot()
    installed = home_ansible / "collections" / "ansible_collections" / "ray_vsphere"
    (installed / "cluster").mkdir(parents=True)
    (home_provider / "analytics" / "runs").mkdir(parents=True)
    left = leftovers.left_behind(before, leftovers.snapshot())
    assert str(installed) in left["files in the home folder"]
    assert str(home_provider / "analytics") in left["files in the home folder"]


def test_only_existing_paths_of_the_given_user_are_owned_by_it(tmp_path):
    mine, gone = tmp_path / "mine", tmp_path / "gone"
    mine.mkdir()
    uid = mine.stat().st_uid
    assert leftovers.owned_by([str(mine), str(gone)], uid) == [str(mine)]
    assert leftovers.owned_by([str(mine)], uid + 1) == []
