"""TranslateVirtualAddress and TranslateVirtualAddressEx from the caller's side (HYPERCALLS.md
4.20-4.21, 5.8, conformance 7.6 91-93).

The host maps guest RAM at GPA 0 (``RAM_PAGES`` pages, read/write/execute), writes the guest's page
tables into it with ``write_guest`` and sets CR0/CR3/CR4/EFER of VP 0 with SetVpRegisters; then it
asks the hypervisor to walk them. Page-table layouts (GPA):

* 4-level: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000; GVA 0x5000 -> data page 9 (4 KiB),
  PD[1] a 2 MiB page at GPA 0, PDPT[1] a 1 GiB page at GPA 0, PML4[256] the same PDPT (high half).
* PAE: PDPT 0x5000, PD 0x6000, PT 0x7000; GVA 0x3000 -> page 9, PD[1] a 2 MiB page at GPA 0.
* 32-bit: PD 0x8000, PT 0xA000; GVA 0x4000 -> page 9, PD[1] a 4 MiB page at GPA 0 (with PSE).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import pytest

from hvsim.actors.hvdef import (
    CACHE_TYPE_UNCACHED,
    CACHE_TYPE_WRITEBACK,
    TRANSLATE_RESULT_OVERLAY,
    TRANSLATE_VA_EX_OUTPUT,
    TRANSLATE_VA_INPUT,
    TRANSLATE_VA_OUTPUT,
    HvStatus,
    HypercallCode,
    MapGpaFlags,
    RegisterName,
    TranslateGvaFlags,
    TranslateResultCode,
    TranslateVirtualAddressInput,
    control,
)
from hvsim.scenarios.checkers import gpa_mappings

if TYPE_CHECKING:
    from conftest import World  # for annotations only: pytest loads conftest itself

C = HypercallCode
S = HvStatus
F = MapGpaFlags
T = TranslateGvaFlags
RC = TranslateResultCode
R = RegisterName

RAM_PAGES = 64
READ, WRITE, EXEC = T.VALIDATE_READ, T.VALIDATE_WRITE, T.VALIDATE_EXECUTE
USER, SUPERVISOR = T.USER_ACCESS, T.SUPERVISOR_ACCESS

CR0_PE, CR0_ET, CR0_WP, CR0_PG = 1, 1 << 4, 1 << 16, 1 << 31
PAGING = CR0_PG | CR0_ET | CR0_PE
CR4_PSE, CR4_PAE, CR4_SMEP, CR4_SMAP = 1 << 4, 1 << 5, 1 << 20, 1 << 21
EFER_LONG, EFER_NXE = 0x500, 1 << 11  # LME | LMA; NXE
P, RW_, US, A, D, PS = 1, 2, 4, 1 << 5, 1 << 6, 1 << 7
XD = 1 << 63
PRESENT_RW_USER = P | RW_ | US

PML4, PDPT, PD, PT = 0x1000, 0x2000, 0x3000, 0x4000
PAE_PDPT, PAE_PD, PAE_PT = 0x5000, 0x6000, 0x7000
LEGACY_PD, LEGACY_PT = 0x8000, 0xA000
DATA_PAGE = 9
#: GPA pages beyond guest RAM the tests map (or leave unmapped) for GPA-access results.
UNMAPPED, NO_ACCESS, READ_ONLY, UNCACHED = 0x100, 0x101, 0x103, 0x104


class Result(NamedTuple):
    code: RC
    gpa_page: int
    cache: int
    overlay: bool


class Guest:
    """An ACTIVE child with VPs 0 and 1 and RAM at GPA 0, seen from its parent."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.pid = world.active_child(vps=(0, 1), spare=8)
        self.ram = world.host_pages(RAM_PAGES)
        out = world.run(world.api.map_gpa_pages(self.pid, 0, self.ram, F.PERMISSIONS))
        assert out.status is S.SUCCESS

    # --- guest memory --------------------------------------------------------------------------
    def put(self, gpa: int, value: int, size: int = 8) -> None:
        self.w.api.write_guest(self.pid, gpa, value.to_bytes(size, "little"))

    def get(self, gpa: int, size: int = 8) -> int:
        return int.from_bytes(self.w.api.read_guest(self.pid, gpa, size), "little")

    def map(self, gpa_page: int, flags: int) -> int:
        """Map one more host page at *gpa_page*; the host page."""
        (page,) = self.w.host_pages(1)
        source = 0 if flags & F.BACKING_MASK else page
        out = self.w.run(self.w.api.map_gpa_pages(self.pid, gpa_page, [source], flags))
        assert out.status is S.SUCCESS
        return page

    # --- registers -----------------------------------------------------------------------------
    def regs(self, vp: int = 0, **values: int) -> None:
        names = {"cr0": R.Cr0, "cr3": R.Cr3, "cr4": R.Cr4, "efer": R.Efer}
        out = self.w.run(self.w.api.set_registers(self.pid, vp, {names[k]: v for k, v in values.items()}))
        assert out.status is S.SUCCESS, out

    def register(self, name: int, vp: int = 0) -> int:
        return self.w.register(self.pid, vp, name)

    # --- page tables ---------------------------------------------------------------------------
    def long_mode(self, *, cr0: int = PAGING, cr4: int = CR4_PAE, efer: int = EFER_LONG) -> None:
        self.put(PML4, PDPT | PRESENT_RW_USER)
        self.put(PML4 + 8 * 256, PDPT | PRESENT_RW_USER)
        self.put(PDPT, PD | PRESENT_RW_USER)
        self.put(PDPT + 8, PS | PRESENT_RW_USER)  # 1 GiB page at GPA 0
        self.put(PD, PT | PRESENT_RW_USER)
        self.put(PD + 8, PS | PRESENT_RW_USER)  # 2 MiB page at GPA 0
        self.put(PT + 8 * 5, DATA_PAGE << 12 | PRESENT_RW_USER)
        self.regs(cr0=cr0, cr3=PML4, cr4=cr4, efer=efer)

    def pae(self, *, cr4: int = CR4_PAE, efer: int = 0) -> None:
        self.put(PAE_PDPT, PAE_PD | P)
        self.put(PAE_PD, PAE_PT | PRESENT_RW_USER)
        self.put(PAE_PD + 8, PS | PRESENT_RW_USER)  # 2 MiB page at GPA 0
        self.put(PAE_PT + 8 * 3, DATA_PAGE << 12 | PRESENT_RW_USER)
        self.regs(cr0=PAGING, cr3=PAE_PDPT, cr4=cr4, efer=efer)

    def legacy(self, *, cr4: int = CR4_PSE) -> None:
        self.put(LEGACY_PD, LEGACY_PT | PRESENT_RW_USER, 4)
        self.put(LEGACY_PD + 4, PS | PRESENT_RW_USER, 4)  # 4 MiB page at GPA 0 (with PSE)
        self.put(LEGACY_PT + 4 * 4, DATA_PAGE << 12 | PRESENT_RW_USER, 4)
        self.regs(cr0=PAGING, cr3=LEGACY_PD, cr4=cr4, efer=0)

    # --- the call ------------------------------------------------------------------------------
    def translate(self, gva: int, flags: int = READ, *, vp: int = 0) -> Result:
        """Translate the page of *gva* (a byte address) on *vp*."""
        status, result, gpa_page = self.w.run(self.w.api.translate(self.pid, vp, gva >> 12, flags))
        assert status is S.SUCCESS
        return Result(
            RC(result & 0xFFFF_FFFF), gpa_page, (result >> 32) & 0xFF, bool(result & TRANSLATE_RESULT_OVERLAY)
        )

    def code(self, gva: int, flags: int = READ) -> RC:
        return self.translate(gva, flags).code

    def raw(
        self, flags: int = READ, *, vp: int = 0, pid: int | None = None, reserved: int = 0,
        ex: bool = False, caller: int | None = None, gva_page: int = 5,
    ) -> tuple[HvStatus, bytes]:  # fmt: skip
        data = TRANSLATE_VA_INPUT.pack(
            TranslateVirtualAddressInput(self.pid if pid is None else pid, vp, reserved, flags, gva_page)
        )
        code = C.TranslateVirtualAddressEx if ex else C.TranslateVirtualAddress
        res = self.w.call(control(code), data, caller=caller)
        return res.status, res.output


@pytest.fixture
def guest(world: World) -> Iterator[Guest]:
    g = Guest(world)
    yield g
    assert gpa_mappings(world.sim.hv) == []


# --- statuses ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("ex", [False, True], ids=["plain", "Ex"])
def test_7_6_91_no_validate_bit_is_invalid_parameter(guest: Guest, ex: bool) -> None:
    for flags in (0, T.PRIVILEGE_EXEMPT, T.SET_PAGE_TABLE_BITS | USER):
        assert guest.raw(flags, ex=ex)[0] is S.INVALID_PARAMETER, hex(flags)


@pytest.mark.parametrize("ex", [False, True], ids=["plain", "Ex"])
def test_reserved_control_bits_and_vtl_are_invalid_parameter(guest: Guest, ex: bool) -> None:
    # Bits 63:56 are an HV_INPUT_VTL: its reserved bits 7:5, or a VTL other than 0 (none is enabled).
    for flags in (READ | 0x800, READ | 1 << 40, READ | 0xE0 << 56, READ | 0x11 << 56, READ | 0x12 << 56):
        assert guest.raw(flags, ex=ex)[0] is S.INVALID_PARAMETER, hex(flags)
    assert guest.raw(READ, reserved=1, ex=ex)[0] is S.INVALID_PARAMETER
    known = T.VALIDATE | T.PRIVILEGE_EXEMPT | T.SET_PAGE_TABLE_BITS | T.TLB_FLUSH_INHIBIT
    known |= SUPERVISOR | USER | T.ENFORCE_SMAP | T.OVERRIDE_SMAP | T.SHADOW_STACK
    assert guest.raw(known, ex=ex)[0] is S.SUCCESS


@pytest.mark.parametrize("ex", [False, True], ids=["plain", "Ex"])
def test_target_statuses(world: World, guest: Guest, intruder: int, ex: bool) -> None:
    assert guest.raw(caller=intruder, ex=ex)[0] is S.ACCESS_DENIED
    assert guest.raw(pid=0x1234, ex=ex)[0] is S.INVALID_PARTITION_ID
    assert guest.raw(vp=2, ex=ex)[0] is S.INVALID_VP_INDEX
    assert guest.raw(vp=0xFFFF_FFFE, ex=ex)[0] is S.INVALID_VP_INDEX
    created = world.new_child()
    assert guest.raw(pid=created, ex=ex)[0] is S.INVALID_PARTITION_STATE
    # The root has no parent to translate for it.
    assert guest.raw(pid=world.root, caller=None, ex=ex)[0] is S.ACCESS_DENIED
    assert world.by_id(C.FinalizePartition, guest.pid) is S.SUCCESS
    assert guest.raw(ex=ex)[0] is S.INVALID_PARTITION_STATE


def test_ex_output_layout(guest: Guest) -> None:
    guest.long_mode()
    status, plain = guest.raw(READ, gva_page=5)
    assert status is S.SUCCESS and len(plain) == TRANSLATE_VA_OUTPUT.size == 16
    status, out = guest.raw(READ, gva_page=5, ex=True)
    assert status is S.SUCCESS and len(out) == TRANSLATE_VA_EX_OUTPUT.size == 56
    assert out[:8] == plain[:8]  # the same HV_TRANSLATE_GVA_RESULT
    assert out[8:48] == bytes(40)  # reserved, then no pending event
    assert int.from_bytes(out[48:56], "little") == DATA_PAGE == int.from_bytes(plain[8:16], "little")
    # A failed translation has the same shape.
    status, out = guest.raw(READ, gva_page=6, ex=True)
    assert status is S.SUCCESS and int.from_bytes(out[:4], "little") == RC.PageNotPresent


# --- paging off, and the GPA access check ------------------------------------------------------------
def test_7_6_92_paging_off_is_the_identity(guest: Guest) -> None:
    assert guest.register(R.Cr0) & CR0_PG == 0
    for gva_page in (0, 5, RAM_PAGES - 1):
        res = guest.translate(gva_page << 12, READ | WRITE | EXEC)
        assert (res.code, res.gpa_page, res.cache, res.overlay) == (
            RC.Success,
            gva_page,
            CACHE_TYPE_WRITEBACK,
            False,
        )


def test_gpa_access_results_name_the_gpa(guest: Guest) -> None:
    guest.map(NO_ACCESS, 0)
    guest.map(READ_ONLY, F.READABLE)
    guest.map(0x105, F.NO_ACCESS)
    assert guest.translate(UNMAPPED << 12) == (RC.GpaUnmapped, UNMAPPED, CACHE_TYPE_WRITEBACK, False)
    assert guest.translate(NO_ACCESS << 12)[:2] == (RC.GpaNoReadAccess, NO_ACCESS)
    assert guest.translate(0x105 << 12)[:2] == (RC.GpaNoReadAccess, 0x105)
    assert guest.translate(READ_ONLY << 12, READ)[:2] == (RC.Success, READ_ONLY)
    assert guest.translate(READ_ONLY << 12, WRITE)[:2] == (RC.GpaNoWriteAccess, READ_ONLY)
    assert guest.translate(READ_ONLY << 12, EXEC)[:2] == (RC.Success, READ_ONLY)


def test_not_cached_mappings_report_cache_type_uncached(guest: Guest) -> None:
    guest.map(UNCACHED, F.READABLE | F.WRITABLE | F.NOT_CACHED)
    assert guest.translate(UNCACHED << 12).cache == CACHE_TYPE_UNCACHED
    assert guest.translate(DATA_PAGE << 12).cache == CACHE_TYPE_WRITEBACK
    guest.long_mode()
    guest.put(PT + 8 * 14, UNCACHED << 12 | PRESENT_RW_USER)
    assert guest.translate(14 << 12) == (RC.Success, UNCACHED, CACHE_TYPE_UNCACHED, False)


def test_the_vps_synic_pages_are_overlays(world: World, guest: Guest) -> None:
    out = world.run(world.api.enable_synic(guest.pid, 0, {2: 0x30}, simp_gpa=0x20000, siefp_gpa=0x500000))
    assert out.status is S.SUCCESS
    assert guest.translate(0x20000) == (RC.Success, 0x20, CACHE_TYPE_WRITEBACK, True)
    assert guest.translate(0x500000) == (RC.Success, 0x500, CACHE_TYPE_WRITEBACK, True)  # over unmapped GPA
    assert guest.translate(0x21000).overlay is False
    # Overlays are per VP: VP 1 sees plain RAM (and nothing) there.
    assert guest.translate(0x20000, vp=1) == (RC.Success, 0x20, CACHE_TYPE_WRITEBACK, False)
    assert guest.translate(0x500000, vp=1).code is RC.GpaUnmapped
    # Through the page tables too.
    guest.long_mode()
    guest.put(PT + 8 * 13, 0x20000 | PRESENT_RW_USER)
    assert guest.translate(13 << 12) == (RC.Success, 0x20, CACHE_TYPE_WRITEBACK, True)


# --- 4-level walks ------------------------------------------------------------------------------------
def test_4_level_walks_4k_2m_and_1g_pages(guest: Guest) -> None:
    guest.long_mode()
    assert guest.translate(0x5000)[:2] == (RC.Success, DATA_PAGE)
    assert guest.translate(0x5FFF)[:2] == (RC.Success, DATA_PAGE)
    assert guest.translate(0x20_0000 + 0x9000)[:2] == (RC.Success, 9)  # 2 MiB page at GPA 0
    assert guest.translate(0x20_0000 + 0x3F000)[:2] == (RC.Success, 0x3F)
    assert guest.translate(0x4000_0000 + 0x9000)[:2] == (RC.Success, 9)  # 1 GiB page at GPA 0
    assert guest.translate(0x4000_0000 + 0x3F000)[:2] == (RC.Success, 0x3F)
    # Beyond guest RAM the walk still translates: the GPA it reached is named.
    assert guest.translate(0x4000_0000 + 0x20_0000 + 0x1000)[:2] == (RC.GpaUnmapped, 0x201)
    assert guest.translate(0xFFFF_8000_0000_5000)[:2] == (RC.Success, DATA_PAGE)  # high half


def test_7_6_93_a_gva_without_a_present_pte_is_page_not_present(guest: Guest) -> None:
    guest.long_mode()
    res = guest.translate(0x6000)
    assert (res.code, res.gpa_page) == (RC.PageNotPresent, 0)
    assert guest.code(0x0000_8000_0000_0000) is RC.PageNotPresent  # not canonical
    assert guest.code(0x0000_0080_0000_5000) is RC.PageNotPresent  # PML4[1] is empty


@pytest.mark.parametrize(
    ("table", "index"), [(PML4, 0), (PDPT, 0), (PD, 0), (PT, 5)], ids=["PML4E", "PDPTE", "PDE", "PTE"]
)
def test_page_not_present_at_each_level(guest: Guest, table: int, index: int) -> None:
    guest.long_mode()
    entry = guest.get(table + 8 * index)
    guest.put(table + 8 * index, entry & ~P)
    assert guest.translate(0x5000)[:2] == (RC.PageNotPresent, 0)
    guest.put(table + 8 * index, entry)
    assert guest.code(0x5000) is RC.Success


INVALID_FLAGS = {
    "PTE-bit-50": (PT + 8 * 5, DATA_PAGE << 12 | PRESENT_RW_USER | 1 << 50, 0x5000),
    "PML4E-bit-47": (PML4, PDPT | PRESENT_RW_USER | 1 << 47, 0x5000),
    "PS-in-PML4E": (PML4, PDPT | PRESENT_RW_USER | PS, 0x5000),
    "XD-without-NXE": (PT + 8 * 5, DATA_PAGE << 12 | PRESENT_RW_USER | XD, 0x5000),
    "XD-without-NXE-in-PDE": (PD, PT | PRESENT_RW_USER | XD, 0x5000),
    "2M-page-bit-13": (PD + 8, PS | PRESENT_RW_USER | 1 << 13, 0x20_0000),
    "2M-page-bit-20": (PD + 8, PS | PRESENT_RW_USER | 1 << 20, 0x20_0000),
    "1G-page-bit-21": (PDPT + 8, PS | PRESENT_RW_USER | 1 << 21, 0x4000_0000),
    "1G-page-bit-29": (PDPT + 8, PS | PRESENT_RW_USER | 1 << 29, 0x4000_0000),
}


@pytest.mark.parametrize(("gpa", "entry", "gva"), list(INVALID_FLAGS.values()), ids=list(INVALID_FLAGS))
def test_reserved_bits_are_invalid_page_table_flags(guest: Guest, gpa: int, entry: int, gva: int) -> None:
    guest.long_mode()
    guest.put(gpa, entry)
    assert guest.translate(gva, READ | T.PRIVILEGE_EXEMPT)[:2] == (RC.InvalidPageTableFlags, 0)


def test_xd_is_legal_with_efer_nxe_and_large_frames_are_aligned_above_bit_12(guest: Guest) -> None:
    guest.long_mode(efer=EFER_LONG | EFER_NXE)
    guest.put(PT + 8 * 5, DATA_PAGE << 12 | PRESENT_RW_USER | XD)
    assert guest.code(0x5000) is RC.Success
    guest.put(PD + 8, 1 << 21 | PS | PRESENT_RW_USER | 1 << 12)  # bit 12 is PAT in a large-page entry
    assert guest.translate(0x20_0000 + 0x3000)[:2] == (RC.GpaUnmapped, 0x203)  # beyond RAM, named


# --- privileges ------------------------------------------------------------------------------------
def test_user_access_to_a_supervisor_page(guest: Guest) -> None:
    guest.long_mode()
    guest.put(PT + 8 * 6, DATA_PAGE << 12 | P | RW_)  # supervisor only
    assert guest.code(0x6000, READ | USER) is RC.PrivilegeViolation
    assert guest.code(0x6000, READ | SUPERVISOR) is RC.Success
    assert guest.code(0x6000, READ) is RC.Success
    assert guest.code(0x6000, READ | USER | T.PRIVILEGE_EXEMPT) is RC.Success
    # U/S clear at an upper level covers everything below it.
    guest.put(PD, PT | P | RW_)
    assert guest.code(0x5000, READ | USER) is RC.PrivilegeViolation


def test_write_to_a_read_only_page(guest: Guest) -> None:
    guest.long_mode()  # CR0.WP clear
    guest.put(PT + 8 * 7, DATA_PAGE << 12 | P | US)  # read-only
    assert guest.code(0x7000, READ) is RC.Success
    assert guest.code(0x7000, WRITE) is RC.Success  # supervisor writes ignore R/W without WP
    assert guest.code(0x7000, WRITE | USER) is RC.PrivilegeViolation
    guest.regs(cr0=PAGING | CR0_WP)
    assert guest.code(0x7000, WRITE) is RC.PrivilegeViolation
    assert guest.code(0x7000, WRITE | T.PRIVILEGE_EXEMPT) is RC.Success
    # R/W clear in the PDPTE makes the whole 1 GiB below it read-only.
    guest.put(PDPT, PD | P | US)
    assert guest.code(0x5000, WRITE) is RC.PrivilegeViolation


def test_execute_of_an_nx_page(guest: Guest) -> None:
    guest.long_mode(efer=EFER_LONG | EFER_NXE)
    guest.put(PT + 8 * 8, DATA_PAGE << 12 | PRESENT_RW_USER | XD)
    assert guest.code(0x8000, EXEC) is RC.PrivilegeViolation
    assert guest.code(0x8000, READ | WRITE) is RC.Success
    assert guest.code(0x8000, EXEC | T.PRIVILEGE_EXEMPT) is RC.Success
    assert guest.code(0x5000, EXEC) is RC.Success
    guest.put(PD + 8, PS | PRESENT_RW_USER | XD)  # on a 2 MiB page
    assert guest.code(0x20_0000, EXEC) is RC.PrivilegeViolation


def test_smep(guest: Guest) -> None:
    guest.long_mode()
    assert guest.code(0x5000, EXEC) is RC.Success  # a user page, SMEP off
    guest.regs(cr4=CR4_PAE | CR4_SMEP)
    assert guest.code(0x5000, EXEC) is RC.PrivilegeViolation  # supervisor fetch from a user page
    assert guest.code(0x5000, EXEC | USER) is RC.Success
    assert guest.code(0x5000, READ) is RC.Success
    assert guest.code(0x5000, EXEC | T.PRIVILEGE_EXEMPT) is RC.Success
    guest.put(PT + 8 * 6, DATA_PAGE << 12 | P | RW_)
    assert guest.code(0x6000, EXEC) is RC.Success  # a supervisor page


def test_smap(guest: Guest) -> None:
    guest.long_mode(cr4=CR4_PAE | CR4_SMAP)
    assert guest.code(0x5000, READ) is RC.Success  # SMAP is checked only when asked
    assert guest.code(0x5000, READ | T.ENFORCE_SMAP) is RC.PrivilegeViolation
    assert guest.code(0x5000, WRITE | T.ENFORCE_SMAP) is RC.PrivilegeViolation
    assert guest.code(0x5000, READ | T.ENFORCE_SMAP | T.OVERRIDE_SMAP) is RC.Success
    assert guest.code(0x5000, READ | T.ENFORCE_SMAP | USER) is RC.Success
    assert guest.code(0x5000, READ | T.ENFORCE_SMAP | T.PRIVILEGE_EXEMPT) is RC.Success
    guest.put(PT + 8 * 6, DATA_PAGE << 12 | P | RW_)
    assert guest.code(0x6000, READ | T.ENFORCE_SMAP) is RC.Success  # a supervisor page
    guest.regs(cr4=CR4_PAE)
    assert guest.code(0x5000, READ | T.ENFORCE_SMAP) is RC.Success  # CR4.SMAP off


# --- GPA access during the walk -----------------------------------------------------------------------
def test_an_unmapped_or_unreadable_page_table_page_is_named(guest: Guest) -> None:
    guest.long_mode()
    guest.map(NO_ACCESS, 0)
    guest.put(PD + 8 * 2, UNMAPPED << 12 | PRESENT_RW_USER)
    guest.put(PD + 8 * 3, NO_ACCESS << 12 | PRESENT_RW_USER)
    assert guest.translate(2 << 21 | 0x5000)[:2] == (RC.GpaUnmapped, UNMAPPED)
    assert guest.translate(3 << 21 | 0x5000)[:2] == (RC.GpaNoReadAccess, NO_ACCESS)
    guest.regs(cr3=UNMAPPED << 12)  # the PML4 itself
    assert guest.translate(0x5000)[:2] == (RC.GpaUnmapped, UNMAPPED)
    assert guest.translate(0x5000, READ | T.PRIVILEGE_EXEMPT)[:2] == (RC.GpaUnmapped, UNMAPPED)


def test_an_unmapped_unreadable_or_read_only_final_page_is_named(guest: Guest) -> None:
    guest.long_mode()
    guest.map(NO_ACCESS, 0)
    guest.map(READ_ONLY, F.READABLE)
    guest.put(PT + 8 * 9, UNMAPPED << 12 | PRESENT_RW_USER)
    guest.put(PT + 8 * 10, NO_ACCESS << 12 | PRESENT_RW_USER)
    guest.put(PT + 8 * 11, READ_ONLY << 12 | PRESENT_RW_USER)
    assert guest.translate(0x9000)[:2] == (RC.GpaUnmapped, UNMAPPED)
    assert guest.translate(0xA000)[:2] == (RC.GpaNoReadAccess, NO_ACCESS)
    assert guest.translate(0xB000, READ)[:2] == (RC.Success, READ_ONLY)
    assert guest.translate(0xB000, WRITE)[:2] == (RC.GpaNoWriteAccess, READ_ONLY)
    # The privilege check comes first: a user write to a supervisor page is a PrivilegeViolation.
    guest.put(PT + 8 * 11, READ_ONLY << 12 | P | RW_)
    assert guest.translate(0xB000, WRITE | USER)[:2] == (RC.PrivilegeViolation, 0)


def test_a_no_access_page_table_page_is_gpa_no_read_access(guest: Guest) -> None:
    guest.map(0x105, F.NO_ACCESS)
    assert guest.translate(0x105 << 12)[:2] == (RC.GpaNoReadAccess, 0x105)  # the final page, paging off
    guest.long_mode()
    guest.put(PD + 8 * 2, 0x105 << 12 | PRESENT_RW_USER)
    assert guest.translate(2 << 21 | 0x5000)[:2] == (RC.GpaNoReadAccess, 0x105)


def test_a_zeroed_page_table_page_reads_as_not_present_entries(guest: Guest) -> None:
    guest.long_mode()
    guest.map(0x106, F.ZEROED | F.READABLE)
    guest.put(PD + 8 * 2, 0x106 << 12 | PRESENT_RW_USER)
    assert guest.translate(2 << 21 | 0x5000)[:2] == (RC.PageNotPresent, 0)


# --- SET_PAGE_TABLE_BITS and TLB_FLUSH_INHIBIT ----------------------------------------------------------
def test_set_page_table_bits_sets_accessed_and_dirty(guest: Guest) -> None:
    guest.long_mode()
    chain = (PML4, PDPT, PD, PT + 8 * 5)
    assert guest.code(0x5000, READ) is RC.Success
    assert [guest.get(e) & (A | D) for e in chain] == [0, 0, 0, 0]  # not without the flag
    assert guest.code(0x5000, READ | T.SET_PAGE_TABLE_BITS) is RC.Success
    assert [guest.get(e) & (A | D) for e in chain] == [A, A, A, A]
    assert guest.code(0x5000, WRITE | T.SET_PAGE_TABLE_BITS) is RC.Success
    assert [guest.get(e) & (A | D) for e in chain] == [A, A, A, A | D]  # dirty: the leaf only
    assert guest.get(PT + 8 * 5) == DATA_PAGE << 12 | PRESENT_RW_USER | A | D  # nothing else changed
    # A large page is the leaf of its walk.
    assert guest.code(0x20_0000, WRITE | T.SET_PAGE_TABLE_BITS) is RC.Success
    assert guest.get(PD + 8) & (A | D) == A | D
    assert guest.code(0x4000_0000, READ | T.SET_PAGE_TABLE_BITS) is RC.Success
    assert guest.get(PDPT + 8) & (A | D) == A


def test_set_page_table_bits_are_not_rolled_back_on_a_failed_walk(guest: Guest) -> None:
    guest.long_mode()
    assert guest.code(0xC000, WRITE | T.SET_PAGE_TABLE_BITS) is RC.PageNotPresent  # PT[12] is empty
    assert [guest.get(e) & (A | D) for e in (PML4, PDPT, PD)] == [A, A, A]
    assert guest.get(PT + 8 * 12) == 0
    assert guest.get(PT + 8 * 5) & A == 0  # another leaf: untouched
    # The PML4 entry of the high half was not walked.
    assert guest.get(PML4 + 8 * 256) & A == 0


def test_set_page_table_bits_needs_a_writable_page_table_page(guest: Guest) -> None:
    guest.long_mode()
    guest.map(READ_ONLY, F.READABLE)
    guest.put((READ_ONLY << 12) + 8 * 5, DATA_PAGE << 12 | PRESENT_RW_USER)  # a PT in a read-only page
    guest.put(PD + 8 * 4, READ_ONLY << 12 | PRESENT_RW_USER)
    gva = 4 << 21 | 0x5000
    assert guest.translate(gva)[:2] == (RC.Success, DATA_PAGE)
    assert guest.translate(gva, READ | T.SET_PAGE_TABLE_BITS)[:2] == (RC.GpaNoWriteAccess, READ_ONLY)
    assert guest.get(PD + 8 * 4) & A  # the levels above it were marked before the failure


def test_tlb_flush_inhibit_sets_tlb_locked(guest: Guest) -> None:
    guest.long_mode()
    assert guest.register(R.InterceptSuspend) == 0
    assert guest.code(0x6000, READ | T.TLB_FLUSH_INHIBIT) is RC.PageNotPresent
    assert guest.register(R.InterceptSuspend) == 0  # only a successful translation locks
    assert guest.code(0x5000, READ) is RC.Success
    assert guest.register(R.InterceptSuspend) == 0
    assert guest.code(0x5000, READ | T.TLB_FLUSH_INHIBIT) is RC.Success
    assert guest.register(R.InterceptSuspend) == 2  # TlbLocked (bit 1); the VP is not suspended
    assert guest.register(R.InterceptSuspend, vp=1) == 0
    out = guest.w.run(guest.w.api.set_registers(guest.pid, 0, {R.InterceptSuspend: 0}))
    assert out.status is S.SUCCESS  # the host releases it
    assert guest.register(R.InterceptSuspend) == 0


# --- PAE and 32-bit walks ----------------------------------------------------------------------------
def test_pae_walks(guest: Guest) -> None:
    guest.pae()
    assert guest.translate(0x3000)[:2] == (RC.Success, DATA_PAGE)
    assert guest.translate(0x20_0000 + 0x9000)[:2] == (RC.Success, 9)  # 2 MiB page
    assert guest.code(0x4000) is RC.PageNotPresent  # PTE
    assert guest.code(0x4000_0000) is RC.PageNotPresent  # PDPTE 1
    assert guest.code(0x1_0000_0000) is RC.PageNotPresent  # beyond 32 bits
    guest.put(PAE_PD, PAE_PT | PRESENT_RW_USER & ~P)
    assert guest.code(0x3000) is RC.PageNotPresent  # PDE


def test_pae_reserved_bits_and_nx(guest: Guest) -> None:
    guest.pae(efer=EFER_NXE)
    guest.put(PAE_PT + 8 * 3, DATA_PAGE << 12 | PRESENT_RW_USER | XD)
    assert guest.code(0x3000, EXEC) is RC.PrivilegeViolation
    assert guest.code(0x3000, READ) is RC.Success
    guest.put(PAE_PD + 8, PS | PRESENT_RW_USER | 1 << 13)  # alignment bit of a 2 MiB frame
    assert guest.code(0x20_0000) is RC.InvalidPageTableFlags
    for pdpte in (PAE_PD | P | RW_, PAE_PD | P | XD, PAE_PD | P | 1 << 5):
        guest.put(PAE_PDPT, pdpte)  # PDPTEs carry no R/W, U/S, A or NX
        assert guest.code(0x3000) is RC.InvalidPageTableFlags, hex(pdpte)
    guest.regs(efer=0)
    guest.put(PAE_PDPT, PAE_PD | P)
    assert guest.code(0x3000) is RC.InvalidPageTableFlags  # XD without EFER.NXE


def test_legacy_32_bit_walks_with_and_without_pse(guest: Guest) -> None:
    guest.legacy()
    assert guest.translate(0x4000)[:2] == (RC.Success, DATA_PAGE)
    assert guest.translate(0x40_0000 + 0x9000)[:2] == (RC.Success, 9)  # 4 MiB page at GPA 0
    assert guest.translate(0x40_0000 + 0x3F000)[:2] == (RC.Success, 0x3F)
    assert guest.code(0x5000) is RC.PageNotPresent
    assert guest.code(0x1_0000_0000) is RC.PageNotPresent  # beyond 32 bits
    # Without CR4.PSE the PS bit is ignored: PD[1] points at a page table at GPA 0.
    guest.put(4 * 9, 0xB000 | PRESENT_RW_USER, 4)
    guest.regs(cr4=0)
    assert guest.translate(0x40_0000 + 0x9000)[:2] == (RC.Success, 0xB)
    assert guest.code(0x40_0000 + 0x8000) is RC.PageNotPresent
    assert guest.translate(0x4000)[:2] == (RC.Success, DATA_PAGE)


def test_legacy_32_bit_flags(guest: Guest) -> None:
    guest.legacy()
    guest.put(LEGACY_PD + 4 * 2, PS | PRESENT_RW_USER | 1 << 13, 4)  # bits 21:13 of a 4 MiB entry
    assert guest.code(0x80_0000) is RC.InvalidPageTableFlags
    guest.put(LEGACY_PD + 4 * 3, 0x40_0000 | PS | PRESENT_RW_USER, 4)  # 4 MiB frame at GPA 4 MiB
    assert guest.translate(0xC0_0000 + 0x2000)[:2] == (RC.GpaUnmapped, 0x402)
    guest.put(LEGACY_PT + 4 * 6, DATA_PAGE << 12 | P | RW_, 4)
    assert guest.code(0x6000, READ | USER) is RC.PrivilegeViolation
    # 32-bit paging has no NX: EFER.NXE changes nothing, execute is allowed.
    guest.regs(efer=EFER_NXE)
    assert guest.code(0x4000, EXEC) is RC.Success
    # Accessed and dirty bits in 4-byte entries.
    assert guest.code(0x4000, WRITE | T.SET_PAGE_TABLE_BITS) is RC.Success
    assert guest.get(LEGACY_PD, 4) & (A | D) == A
    assert guest.get(LEGACY_PT + 4 * 4, 4) & (A | D) == A | D
