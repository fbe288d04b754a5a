"""Messages a VP actor takes and sends (the hypervisor, the partition actor and faults use them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunState:
    """From the hypervisor (via the partition actor): whether this VP may execute now."""

    runnable: bool


@dataclass(frozen=True, slots=True)
class Pause:
    """The physical processor is taken away for *duration_ns* (the host is not told); a pause of
    0 ns ends any pause in progress."""

    duration_ns: int


@dataclass(frozen=True, slots=True)
class Crash:
    """The guest crashes: it reports through the crash registers, then executes nothing more."""

    code: int = 0xDEAD


@dataclass(frozen=True, slots=True)
class SetSpeed:
    """Compute takes *factor* times its nominal time (1.0: full speed)."""

    factor: float


@dataclass(frozen=True, slots=True)
class RegisterRead:
    """The VP reads its own registers (after its parent emulated an intercepted instruction)."""

    partition_id: int
    vp: int
    names: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ApicInterrupt:
    """An interrupt the parent asserted (AssertVirtualInterrupt), for this VP's virtual APIC."""

    vector: int
    kind: int


@dataclass(frozen=True, slots=True)
class InterruptAck:
    """VP 0 took an ExtInt (the INTA cycle), telling the hypervisor."""

    partition_id: int
    vp: int


@dataclass(frozen=True, slots=True)
class SintInterrupt:
    """The hypervisor raised SINT *sint* on this VP (a message slot or event flags changed)."""

    sint: int


@dataclass(frozen=True, slots=True)
class MsrWrite:
    """A guest executed WRMSR on a SynIC register; answered with an ``HvStatus``."""

    partition_id: int
    vp: int
    name: int
    value: int


@dataclass(frozen=True, slots=True)
class DoorbellWrite:
    """A guest wrote *size* bytes of *value* at *gpa* (a doorbell rings if one matches)."""

    partition_id: int
    vp: int
    gpa: int
    value: int
    size: int
