"""The CPUID a partition's VPs see, minus the processor features CreatePartition disabled
(HYPERCALLS.md 4.1, 4.15; HV_PARTITION_PROCESSOR_FEATURES)."""

from __future__ import annotations

import struct

import pytest

from hvsim.actors.cpuid import DISABLEABLE, cpuid_model
from hvsim.actors.hvdef import (
    CPUID_QUERY,
    GET_VP_CPUID_VALUES_HEADER,
    CpuidQuery,
    GetVpCpuidValuesHeader,
    HvStatus,
    HypercallCode,
    control,
)
from hvsim.actors.hvdef import (
    RegisterName as R,
)
from hvsim.actors.workload import Cpuid, Program
from hvsim.scenarios import Simulation
from hvsim.scenarios.host import PartitionSpec, ReferenceHost

S = HvStatus
AES, SMEP, RDTSCP = 16, 23, 38  # HV_PARTITION_PROCESSOR_FEATURES bank-0 bits


def boot(disabled: int) -> tuple[Simulation, int]:
    """A child created with *disabled* features, whose guest runs CPUID 1, 7 and 0x80000001."""
    sim = Simulation(0)
    host = ReferenceHost(sim)
    guest = Program(loop=(Cpuid(1), Cpuid(7), Cpuid(0x8000_0001)), max_loops=1)
    spec = PartitionSpec(vps=1, program=lambda _i: guest, disabled_features=(disabled, 0))
    pid = sim.run_process(host.boot(spec))
    sim.run(sim.now_ns + 1_000_000)
    return sim, pid


def query(sim: Simulation, pid: int, leaves: list[int]) -> list[tuple[int, int, int, int]]:
    header = GET_VP_CPUID_VALUES_HEADER.pack(GetVpCpuidValuesHeader(pid, 0, 0, 0, 0))
    body = b"".join(CPUID_QUERY.pack(CpuidQuery(leaf, 0, 0, 0)) for leaf in leaves)
    res = sim.hypercall(control(HypercallCode.GetVpCpuidValues, rep_count=len(leaves)), header + body)
    assert res.status is S.SUCCESS and res.reps_completed == len(leaves)
    return [struct.unpack_from("<IIII", res.output, 16 * i) for i in range(len(leaves))]


def test_every_disableable_feature_is_on_by_default() -> None:
    for leaf, register, bit in DISABLEABLE.values():
        assert cpuid_model(leaf, 0)[register] >> bit & 1, (hex(leaf), register, bit)


@pytest.mark.parametrize("feature", sorted(DISABLEABLE))
def test_a_disabled_feature_clears_exactly_its_cpuid_bit(feature: int) -> None:
    leaf, register, bit = DISABLEABLE[feature]
    full, cut = cpuid_model(leaf, 0), cpuid_model(leaf, 0, 1 << feature)
    assert cut[register] == full[register] & ~(1 << bit)
    assert [v for i, v in enumerate(cut) if i != register] == [v for i, v in enumerate(full) if i != register]


def test_get_vp_cpuid_values_and_the_guest_see_the_partitions_features() -> None:
    sim, pid = boot(disabled=1 << AES | 1 << SMEP | 1 << RDTSCP)
    leaf1, leaf7, ext = query(sim, pid, [1, 7, 0x8000_0001])
    assert not leaf1[2] >> 25 & 1 and leaf1[2] >> 20 & 1  # AES off, SSE4.2 still on
    assert not leaf7[1] >> 7 & 1 and leaf7[1] >> 3 & 1  # SMEP off, BMI1 still on
    assert not ext[3] >> 27 & 1 and ext[3] >> 29 & 1  # RDTSCP off, long mode still on
    guest = sim.vp_actor(pid, 0)
    assert guest is not None and guest.values == [leaf1[0], leaf7[0], ext[0]]
    regs = sim.hv.partitions[pid].vps[0].regs
    assert (regs[R.Rax], regs[R.Rbx], regs[R.Rcx], regs[R.Rdx]) == ext  # the last CPUID's result


def test_a_partition_without_disabled_features_sees_the_full_model() -> None:
    sim, pid = boot(disabled=0)
    assert query(sim, pid, [1, 7]) == [cpuid_model(1, 0), cpuid_model(7, 0)]
