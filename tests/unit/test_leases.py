"""Driver leases against the in-memory cluster: a lease this process handed back is taken again
without reading it first, and a copy someone changed since is read and judged again."""

from __future__ import annotations

from bot.releases.store import Leases, object_name
from tests.unit.memory_cluster import MemoryCluster

NS = "devops"


async def test_a_handed_back_lease_is_taken_again_without_a_read() -> None:
    cluster = MemoryCluster()
    mine = Leases(cluster, "bot-a", 15)
    assert await mine.acquire(NS, "hexo")
    await mine.release(NS, "hexo")
    reads = len(cluster.reads)
    assert await mine.acquire(NS, "hexo")  # the next release of the app
    assert len(cluster.reads) == reads
    held = cluster.objects["leases"][(NS, object_name("hexo"))]["spec"]
    assert held["holderIdentity"] == "bot-a"


async def test_a_stale_handed_back_copy_is_read_and_respected() -> None:
    cluster = MemoryCluster()
    mine, theirs = Leases(cluster, "bot-a", 15), Leases(cluster, "bot-b", 15)
    assert await mine.acquire(NS, "hexo")
    await mine.release(NS, "hexo")
    assert await theirs.acquire(NS, "hexo")  # another replica took it meanwhile
    claim = await mine.acquire(NS, "hexo")
    assert not claim and claim.expires is not None  # told when theirs runs out
    assert cluster.objects["leases"][(NS, object_name("hexo"))]["spec"]["holderIdentity"] == "bot-b"
