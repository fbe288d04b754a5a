"""TranslateVirtualAddress and TranslateVirtualAddressEx (HYPERCALLS.md 4.20-4.21, 5.8): a walk of
the guest's x64 page tables in guest memory, in the VP's current paging mode.

Paging modes follow CR0.PG, CR4.PAE, CR4.PSE and EFER.LMA: off (identity), 32-bit (4-byte entries,
4 MiB pages with PSE), PAE (a 4-entry PDPT, 2 MiB pages) and 4-level long mode (2 MiB and 1 GiB
pages). Each table is read through the partition's GPA mappings; a table page that is unmapped or
unreadable ends the walk with GpaUnmapped / GpaNoReadAccess naming that page. Present, reserved
bits (above MAXPHYADDR, NX without EFER.NXE, PS where it cannot be, large-page alignment bits), and
R/W, U/S, NX, WP, SMEP and SMAP are checked as the control flags ask. The hypercall succeeds even
when the translation fails: the result code says why.
"""

from __future__ import annotations

from typing import NamedTuple

from hvsim.actors.hvdef import (
    CACHE_TYPE_UNCACHED,
    CACHE_TYPE_WRITEBACK,
    INTERCEPT_SUSPEND_TLB_LOCKED,
    TRANSLATE_RESULT_OVERLAY,
    TRANSLATE_VA_EX_OUTPUT,
    TRANSLATE_VA_INPUT,
    TRANSLATE_VA_OUTPUT,
    HvStatus,
    MapGpaFlags,
    RegisterName,
    TranslateGvaFlags,
    TranslateResultCode,
)
from hvsim.actors.hypercall import Call
from hvsim.actors.model import Partition, PartitionState, Vp
from hvsim.actors.state import OK, HvState
from hvsim.actors.synic import overlay

S = HvStatus
R = RegisterName
T = TranslateGvaFlags
RC = TranslateResultCode
F = MapGpaFlags

CR0_WP, CR0_PG = 1 << 16, 1 << 31
CR4_PSE, CR4_PAE, CR4_SMEP, CR4_SMAP = 1 << 4, 1 << 5, 1 << 20, 1 << 21
EFER_LMA, EFER_NXE = 1 << 10, 1 << 11
PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS = 1, 2, 4, 1 << 5, 1 << 6, 1 << 7
PTE_XD = 1 << 63


class Level(NamedTuple):
    shift: int  # GVA bits this level indexes start here
    bits: int  # index width
    size: int  # entry bytes
    large_ok: bool  # PS may map a large page here


Levels = tuple[Level, ...]
LONG_MODE: Levels = (
    Level(39, 9, 8, False), Level(30, 9, 8, True), Level(21, 9, 8, True), Level(12, 9, 8, False)
)  # fmt: skip
PAE: Levels = (Level(30, 2, 8, False), Level(21, 9, 8, True), Level(12, 9, 8, False))
LEGACY: Levels = (Level(22, 10, 4, True), Level(12, 10, 4, False))


class Walk(NamedTuple):
    code: RC
    gpa_page: int
    overlay: bool = False
    uncached: bool = False


class TranslateCalls(HvState):
    def translate_virtual_address(self, call: Call) -> HvStatus:
        return self._translate(call, ex=False)

    def translate_virtual_address_ex(self, call: Call) -> HvStatus:
        return self._translate(call, ex=True)

    def _translate(self, call: Call, *, ex: bool) -> HvStatus:
        inp = TRANSLATE_VA_INPUT.unpack(call.input)
        status, target = self.child_target(call.caller, inp.partition_id, (PartitionState.ACTIVE,))
        if target is None:
            return status
        vp = target.vps.get(inp.vp_index)
        if vp is None:
            return S.INVALID_VP_INDEX
        flags = inp.control_flags
        vtl = flags >> T.VTL_SHIFT
        if inp.reserved or vtl not in (0, 0x10) or flags & ~T.KNOWN & ((1 << T.VTL_SHIFT) - 1):
            return S.INVALID_PARAMETER  # only VTL 0 exists in this model (0x10: explicitly VTL 0)
        if not flags & T.VALIDATE:
            return S.INVALID_PARAMETER  # at least one VALIDATE_* bit
        walk = self.walk(target, vp, inp.gva_page, flags)
        result = int(walk.code) | (CACHE_TYPE_UNCACHED if walk.uncached else CACHE_TYPE_WRITEBACK) << 32
        if walk.overlay:
            result |= TRANSLATE_RESULT_OVERLAY
        if walk.code is RC.Success and flags & T.TLB_FLUSH_INHIBIT:
            vp.intercept_suspend |= INTERCEPT_SUSPEND_TLB_LOCKED
        if ex:
            call.output[:56] = TRANSLATE_VA_EX_OUTPUT.pack((result, 0, bytes(32), walk.gpa_page))
        else:
            call.output[:16] = TRANSLATE_VA_OUTPUT.pack((result, walk.gpa_page))
        return OK

    # --- the walker ---------------------------------------------------------------------------------
    def walk(self, p: Partition, vp: Vp, gva_page: int, flags: int) -> Walk:
        """Translate GVA page *gva_page* as *vp* would, checking what *flags* ask."""
        regs = vp.regs
        cr0, cr4, efer = regs[R.Cr0], regs[R.Cr4], regs[R.Efer]
        gva = gva_page << 12
        if not cr0 & CR0_PG:  # the identity (7.6/92); the GPA access is checked unless configured
            if self.config.paging_off_checks_gpa_access:
                return self._gpa_access(p, vp, gva_page, flags)
            mapping = p.gpa.get(gva_page)
            uncached = mapping is not None and bool(mapping.flags & F.NOT_CACHED)
            return Walk(RC.Success, gva_page, overlay(vp.regs, vp.synic, gva_page) is not None, uncached)
        if efer & EFER_LMA:
            levels, table = LONG_MODE, regs[R.Cr3] & 0x000F_FFFF_FFFF_F000
            if gva >> 47 not in (0, (1 << 17) - 1):
                return Walk(RC.PageNotPresent, 0)  # non-canonical: outside the paging range
            gva &= (1 << 48) - 1  # the sign-extension bits are not translated
        elif cr4 & CR4_PAE:
            levels, table = PAE, regs[R.Cr3] & 0xFFFF_FFE0
        else:
            levels, table = LEGACY, regs[R.Cr3] & 0xFFFF_F000
        if gva >> (levels[0].shift + levels[0].bits):
            return Walk(RC.PageNotPresent, 0)  # beyond what this paging mode translates
        nx_on = bool(efer & EFER_NXE) and levels is not LEGACY
        writable = user = True
        no_exec = False
        set_bits = bool(flags & T.SET_PAGE_TABLE_BITS)
        gpa = 0
        leaf: tuple[int, int, int, int] | None = None  # where the leaf entry is, for its dirty bit
        for depth, level in enumerate(levels):
            index = (gva >> level.shift) & ((1 << level.bits) - 1)
            addr = table + index * level.size
            page, offset = addr >> 12, addr & 0xFFF
            mapping = p.gpa.get(page)
            if mapping is None:
                return Walk(RC.GpaUnmapped, page)
            backing = mapping.flags & F.BACKING_MASK
            if backing == F.NO_ACCESS or not mapping.flags & F.READABLE:
                return Walk(RC.GpaNoReadAccess, page)
            if mapping.spa is None:  # the shared zero or all-ones page
                entry = 0 if backing == F.ZEROED else (1 << (8 * level.size)) - 1
            else:
                entry = int.from_bytes(self.memory.read(mapping.spa, offset, level.size), "little")
            if not entry & PTE_P:
                return Walk(RC.PageNotPresent, 0)
            pdpte = levels is PAE and depth == 0  # PAE PDPTEs carry no access rights
            large = (
                bool(entry & PTE_PS)
                and level.large_ok
                and not pdpte
                and (level.size == 8 or bool(cr4 & CR4_PSE))
            )
            if self._reserved(entry, level, depth, levels, large, nx_on):
                return Walk(RC.InvalidPageTableFlags, 0)
            if not pdpte:
                writable &= bool(entry & PTE_RW)
                user &= bool(entry & PTE_US)
                no_exec |= nx_on and bool(entry & PTE_XD)
            last = large or depth == len(levels) - 1
            if set_bits and not pdpte:
                if not mapping.flags & F.WRITABLE or mapping.spa is None:
                    return Walk(RC.GpaNoWriteAccess, page)
                entry |= PTE_A  # accessed as the walk goes; dirty only once the write is allowed
                self.memory.write(mapping.spa, offset, entry.to_bytes(level.size, "little"))
                leaf = (mapping.spa, offset, level.size, entry)
            if last:
                frame_mask = ((1 << 52) - 1) & ~((1 << level.shift) - 1)
                if level.size == 4 and large:
                    frame_mask = 0xFFC0_0000  # 4 MiB page: bits 31:22 (PSE-36 not modelled)
                gpa = (entry & frame_mask) | (gva & ((1 << level.shift) - 1))
                break
            table = entry & (0x000F_FFFF_FFFF_F000 if level.size == 8 else 0xFFFF_F000)
        if not flags & T.PRIVILEGE_EXEMPT:
            denied = self._privilege(flags, writable, user, no_exec, cr0, cr4)
            if denied:
                return Walk(RC.PrivilegeViolation, 0)
        result = self._gpa_access(p, vp, gpa >> 12, flags)
        if leaf is not None and flags & T.VALIDATE_WRITE and result.code is RC.Success:
            spa, offset, size, entry = leaf
            self.memory.write(spa, offset, (entry | PTE_D).to_bytes(size, "little"))
        return result

    def _reserved(
        self, entry: int, level: Level, depth: int, levels: Levels, large: bool, nx_on: bool
    ) -> bool:
        """Whether *entry* has a reserved bit set for where it sits in the walk."""
        if level.size == 4:
            return large and bool(entry & 0x003F_E000)  # 4 MiB page: bits 21:13 reserved (no PSE-36)
        maxphys = self.config.guest_gpa_bits
        reserved = ((1 << 52) - 1) & ~((1 << maxphys) - 1)
        if not nx_on:
            reserved |= PTE_XD
        if levels is LONG_MODE and depth == 0:
            reserved |= PTE_PS  # no PML4-level pages
        if levels is PAE and depth == 0:
            reserved |= 0x1E6 | PTE_XD  # PDPTE: bits 2:1 and 8:5 reserved, no NX
        if large:
            reserved |= ((1 << level.shift) - 1) & ~0x1FFF  # alignment bits of the large frame
        return bool(entry & reserved)

    @staticmethod
    def _privilege(flags: int, writable: bool, user: bool, no_exec: bool, cr0: int, cr4: int) -> bool:
        """Whether the access the flags describe is denied by the walk's accumulated rights."""
        user_access = bool(flags & T.USER_ACCESS)
        if user_access and not user:
            return True
        if flags & T.VALIDATE_WRITE and not writable and (user_access or cr0 & CR0_WP):
            return True
        if flags & T.VALIDATE_EXECUTE and (no_exec or (not user_access and user and cr4 & CR4_SMEP)):
            return True
        smap = cr4 & CR4_SMAP and flags & T.ENFORCE_SMAP and not flags & T.OVERRIDE_SMAP
        return bool(smap and not user_access and user and flags & (T.VALIDATE_READ | T.VALIDATE_WRITE))

    def _gpa_access(self, p: Partition, vp: Vp, gpa_page: int, flags: int) -> Walk:
        """The final GPA: an overlay page of this VP, or a mapping with the access asked for."""
        if overlay(vp.regs, vp.synic, gpa_page) is not None:
            return Walk(RC.Success, gpa_page, overlay=True)
        mapping = p.gpa.get(gpa_page)
        if mapping is None or (mapping.spa is None and mapping.flags & F.BACKING_MASK == F.NO_ACCESS):
            return Walk(RC.GpaUnmapped if mapping is None else RC.GpaNoReadAccess, gpa_page)
        rights = mapping.flags
        if flags & (T.VALIDATE_READ | T.VALIDATE_EXECUTE) and not rights & F.READABLE:
            return Walk(RC.GpaNoReadAccess, gpa_page)
        if flags & T.VALIDATE_WRITE and not rights & F.WRITABLE:
            return Walk(RC.GpaNoWriteAccess, gpa_page)
        return Walk(RC.Success, gpa_page, uncached=bool(rights & F.NOT_CACHED))
