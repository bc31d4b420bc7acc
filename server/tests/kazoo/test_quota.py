"""Quotas as ZooKeeper 3.7+ keeps them: zkCli's setquota/listquota/delquota against the server,
usage counted in zookeeper_stats, hard limits (-N, -B) refusing creates and setData past them
with QuotaExceeded (-125), soft limits (-n, -b) only counted. Also run against Apache ZooKeeper
(PADDOCK_TEST_REFERENCE_ZK=1, which the reference mode starts with zookeeper.enforceQuota=true)."""

import pytest
from kazoo.exceptions import QuotaExceededError

from test_zkcli import zkcli_session


@pytest.fixture
def zkcli(server):
    with zkcli_session(server.client_addr) as cli:
        cli.expect(r"WatchedEvent state:SyncConnected type:None path:null", timeout=60)
        yield cli


def stats(zk, path):
    return zk.get(f"/zookeeper/quota{path}/zookeeper_stats")[0].decode()


def test_hard_count_and_byte_limits_refuse_past_them(zkcli, zk):
    zk.create("/tenant", b"")
    zk.create("/tenant/a", b"12345")
    zkcli.send("setquota -N 3 /tenant")  # prints nothing; listquota after it is the barrier
    zkcli.run("listquota /tenant", r"^Output quota for /tenant count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=3$")
    # Counted from the subtree as it stands: /tenant itself and /tenant/a.
    zkcli.expect(r"^Output stat for /tenant count=2,bytes=5$")
    assert stats(zk, "/tenant") == "count=2,bytes=5"

    zk.create("/tenant/b", b"")
    assert stats(zk, "/tenant") == "count=3,bytes=5"
    with pytest.raises(QuotaExceededError):
        zk.create("/tenant/c", b"")
    with pytest.raises(QuotaExceededError):
        zk.create("/tenant/b/deeper", b"", ephemeral=True)
    assert sorted(zk.get_children("/tenant")) == ["a", "b"]
    zk.delete("/tenant/a")
    assert stats(zk, "/tenant") == "count=2,bytes=0"
    zk.create("/tenant/c", b"")

    # A byte limit merged into the same quota.
    zkcli.send("setquota -B 10 /tenant")
    zkcli.run("listquota /tenant", r"^Output quota for /tenant count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3$")
    zk.set("/tenant/c", b"0123456789")
    with pytest.raises(QuotaExceededError):
        zk.set("/tenant/c", b"0123456789x")
    assert zk.get("/tenant/c")[0] == b"0123456789"
    # The Java client names the error as ZooKeeper does.
    zkcli.run("create /tenant/d", r"Quota has exceeded : /tenant/d")


def test_soft_limits_count_but_do_not_refuse(zkcli, zk):
    zk.create("/soft", b"")
    zkcli.send("setquota -n 1 /soft")
    zkcli.run("listquota /soft", r"^Output quota for /soft count=1,bytes=-1=;byteHardLimit=-1;countHardLimit=-1$")
    for i in range(3):
        zk.create(f"/soft/n{i}", b"xy")
    assert stats(zk, "/soft") == "count=4,bytes=6"
    zkcli.send("delquota /soft")
    zkcli.run("listquota /soft", r"quota for /soft does not exist")
    assert not zk.exists("/zookeeper/quota/soft/zookeeper_limits")
    zk.create("/soft/after", b"")


def test_zkcli_refuses_nested_quotas_and_missing_paths(zkcli, zk):
    zk.create("/outer", b"")
    zk.create("/outer/inner", b"")
    zkcli.send("setquota -N 5 /outer")
    zkcli.run("listquota /outer", r"^Output quota for /outer ")
    zkcli.run("setquota -N 5 /outer/inner", r"/outer/inner has a parent /outer which has a quota")
    zkcli.run("setquota -N 5 /nowhere", r"/nowhere does not exist")
