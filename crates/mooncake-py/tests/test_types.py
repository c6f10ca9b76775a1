"""ReplicateConfig, SoftPinAction, BufferHandle and MooncakeHostMemAllocator: fields,
types and defaults as the reference's callers use them (no cluster needed)."""

import ctypes

import pytest
from mooncake.store import MooncakeHostMemAllocator, ReplicateConfig, SoftPinAction


def test_defaults():
    c = ReplicateConfig()
    assert c.replica_num == 1
    assert c.with_hard_pin is False
    assert c.preferred_segment == ""
    assert c.preferred_segments == []
    assert c.soft_pin_action == SoftPinAction.PRESERVE
    assert c.soft_pin_ttl_ms is None
    assert c.group_ids is None
    assert "replica_num: 1" in repr(c)


def test_fields_are_settable_with_their_types():
    c = ReplicateConfig()
    c.replica_num = 3
    c.with_hard_pin = True
    c.preferred_segment = "10.0.0.1:1234"
    c.preferred_segments = ["a:1", "b:2"]
    c.soft_pin_action = SoftPinAction.ENABLE
    c.soft_pin_ttl_ms = 0
    c.group_ids = ["g1", "g1"]
    assert (c.replica_num, c.with_hard_pin, c.preferred_segment) == (3, True, "10.0.0.1:1234")
    assert c.preferred_segments == ["a:1", "b:2"]
    assert c.soft_pin_action == SoftPinAction.ENABLE and c.soft_pin_ttl_ms == 0
    assert c.group_ids == ["g1", "g1"]
    c.soft_pin_ttl_ms = None
    assert c.soft_pin_ttl_ms is None
    # the reference's extra tiers are accepted (scripts set them), without effect
    c.nof_replica_num = 0
    c.prefer_alloc_in_same_node = True
    assert (c.nof_replica_num, c.prefer_alloc_in_same_node, c.dfs_replica_num) == (0, True, 0)
    k = ReplicateConfig(replica_num=2, with_hard_pin=True)
    assert (k.replica_num, k.with_hard_pin) == (2, True)
    with pytest.raises(TypeError, match="bogus"):
        ReplicateConfig(bogus=1)


@pytest.mark.parametrize("bad", [-1, "100", 1.5, [1], object()])
def test_soft_pin_ttl_must_be_a_non_negative_int(bad):
    c = ReplicateConfig()
    with pytest.raises(TypeError, match="soft_pin_ttl_ms"):
        c.soft_pin_ttl_ms = bad
    assert c.soft_pin_ttl_ms is None


def test_replica_num_and_field_types():
    c = ReplicateConfig()
    with pytest.raises(TypeError, match="replica_num"):
        c.replica_num = -2
    with pytest.raises(TypeError):
        c.preferred_segments = "not-a-list"
    with pytest.raises(TypeError):
        c.soft_pin_action = 1


def test_soft_pin_action_members():
    assert [m.name for m in (SoftPinAction.PRESERVE, SoftPinAction.ENABLE,
                             SoftPinAction.DISABLE)] == ["PRESERVE", "ENABLE", "DISABLE"]
    assert [int(m) for m in (SoftPinAction.PRESERVE, SoftPinAction.ENABLE,
                             SoftPinAction.DISABLE)] == [0, 1, 2]
    assert SoftPinAction.ENABLE.value == 1
    assert SoftPinAction.ENABLE != SoftPinAction.DISABLE
    assert {SoftPinAction.ENABLE: 1}[SoftPinAction.ENABLE] == 1  # hashable, as pybind enums


def test_host_allocator_gives_usable_aligned_memory():
    a = MooncakeHostMemAllocator()
    ptr = a.alloc(1 << 20)
    assert ptr % 4096 == 0
    view = (ctypes.c_ubyte * (1 << 20)).from_address(ptr)
    assert view[0] == 0 and view[(1 << 20) - 1] == 0
    view[12345] = 77
    assert view[12345] == 77
    assert a.free(ptr) == 0
    assert a.free(ptr) == -600
    with pytest.raises(ValueError):
        a.alloc(0)
