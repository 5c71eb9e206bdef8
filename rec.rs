// SPDX-License-Identifier: GPL-2.0

//! RECs (Realm Execution Contexts): the RMM's half of a realm vCPU.
//!
//! Part of the sans-IO core. A realm gets one REC per vCPU when it is
//! activated, created in vCPU-id order because the RMM numbers RECs by
//! creation and requires each REC's MPIDR to name that number. `REC_CREATE`
//! asks for the REC's auxiliary granules through a stateful operation that
//! cannot be cancelled, so they are allocated before it starts; the REC
//! owns them (and its own granule) until `REC_DESTROY` gives them back.

use core::fmt;

use crate::addr::Granule;
use crate::granule::{
    DelegatedGranule,
    GranuleSet,
    PageSource,
    Rmi, //
};
use crate::rmi_cmds::{
    rec_create_call,
    rec_destroy_call,
    RmiFeatureRegs,
    SmcConduit, //
};
use crate::rmi_smc::{
    RmiRecMpidr,
    RmiRecParams,
    REC_PARAMS_FLAG_RUNNABLE, //
};
use crate::sro::{
    run_from,
    SroError, //
};

/// Auxiliary granules the RMM asks for per REC (TF-RMM's
/// `MAX_REC_AUX_GRANULES`). More are allocated on demand if a future RMM
/// asks for more, at the risk that `ENOMEM` then leaves the REC stuck.
pub(crate) const REC_AUX_GRANULES: usize = 16;

/// What the host knows of a vCPU when its realm is activated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VcpuSetup {
    /// KVM's `vcpu_id` (what userspace chose; KVM derives MPIDR from it).
    pub(crate) id: u32,
    /// `KVM_ARM_VCPU_INIT` was done.
    pub(crate) initialized: bool,
    /// The vCPU has `KVM_ARM_VCPU_PSCI_0_2`: the RMM implements PSCI 1.1
    /// itself, so the host must speak PSCI 0.2 or later back.
    pub(crate) psci_0_2: bool,
    /// The vCPU asked for AArch32 EL1 (`KVM_ARM_VCPU_EL1_32BIT`).
    pub(crate) el1_32bit: bool,
    /// The vCPU asked for EL2 (`KVM_ARM_VCPU_HAS_EL2`).
    pub(crate) has_el2: bool,
    /// Starts powered off (`KVM_ARM_VCPU_POWER_OFF`, or stopped by
    /// `KVM_SET_MP_STATE`).
    pub(crate) powered_off: bool,
    /// Initial PC.
    pub(crate) pc: u64,
    /// Initial x0..x7 (the rest of the registers start zero in a REC).
    pub(crate) gprs: [u64; 8],
    /// The SVE vector length in bytes, 0 without SVE.
    pub(crate) sve_vl: u32,
}

/// Why a vCPU cannot become a REC (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VcpuRefusal {
    /// `KVM_ARM_VCPU_INIT` was not done.
    NotInitialized,
    /// No `KVM_ARM_VCPU_PSCI_0_2`.
    NoPsci02,
    /// AArch32 EL1: realms are AArch64 only.
    AArch32,
    /// Nested virtualization: realms have no EL2.
    Nested,
    /// The vCPU ids are not `0..n` in creation order: the RMM ties a REC's
    /// number, its MPIDR and its creation order together.
    IdOutOfOrder {
        /// The REC number this vCPU would get.
        position: u64,
        /// Its `vcpu_id`.
        id: u32,
    },
    /// More vCPUs than the RMM allows RECs in one realm.
    TooMany {
        /// The RMM's limit.
        max: u64,
    },
    /// The boot vCPU (id 0) is powered off: nothing could ever turn the
    /// realm on, since only a REC can send PSCI `CPU_ON`.
    BootVcpuOff,
    /// A PMU: realms run with the RMM's PMU support off.
    Pmu,
    /// SVE, which the RMM or the realm as created does not have.
    Sve,
    /// An SVE vector length (bytes) other than the realm's.
    SveVl {
        /// The vCPU's.
        vcpu: u32,
        /// The realm's (0 without SVE).
        realm: u32,
    },
}

impl fmt::Display for VcpuRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInitialized => f.write_str("vCPU not initialized"),
            Self::NoPsci02 => f.write_str("vCPU without PSCI 0.2"),
            Self::AArch32 => f.write_str("AArch32 vCPU"),
            Self::Nested => f.write_str("vCPU with EL2"),
            Self::IdOutOfOrder { position, id } => {
                write!(
                    f,
                    "vCPU {position} has id {id}: ids must be 0..n in creation order"
                )
            }
            Self::TooMany { max } => write!(f, "more than {max} vCPUs"),
            Self::BootVcpuOff => f.write_str("vCPU 0 is powered off"),
            Self::Pmu => f.write_str("vCPU with a PMU"),
            Self::Sve => f.write_str("vCPU with SVE, which the realm does not have"),
            Self::SveVl { vcpu, realm } => write!(
                f,
                "vCPU with SVE vectors of {vcpu} bytes in a realm with {realm}"
            ),
        }
    }
}

/// `KVM_ARM_VCPU_INIT` feature bits (uAPI, `asm/kvm.h`) the realm policy
/// looks at.
pub(crate) mod vcpu_feature {
    /// `KVM_ARM_VCPU_EL1_32BIT`.
    pub(crate) const EL1_32BIT: u32 = 1;
    /// `KVM_ARM_VCPU_PSCI_0_2`.
    pub(crate) const PSCI_0_2: u32 = 2;
    /// `KVM_ARM_VCPU_PMU_V3`.
    pub(crate) const PMU_V3: u32 = 3;
    /// `KVM_ARM_VCPU_SVE`.
    pub(crate) const SVE: u32 = 4;
    /// `KVM_ARM_VCPU_HAS_EL2`.
    pub(crate) const HAS_EL2: u32 = 7;
    /// `KVM_ARM_VCPU_HAS_EL2_E2H0`.
    pub(crate) const HAS_EL2_E2H0: u32 = 8;
}

/// Checks the features of a `KVM_ARM_VCPU_INIT` on a realm vCPU (a bitmap
/// of `KVM_ARM_VCPU_*`), so that a vCPU that could never become a REC is
/// refused at once rather than at activation.
///
/// Realms get no PMU (off in the realm parameters), and SVE only if
/// `sve_offered` (the RMM has it and the realm's RD does not exist yet or
/// was made with SVE).
pub(crate) fn check_init_features(features: u64, sve_offered: bool) -> Result<(), VcpuRefusal> {
    let has = |bit: u32| features & (1u64 << bit) != 0;
    if has(vcpu_feature::EL1_32BIT) {
        return Err(VcpuRefusal::AArch32);
    }
    if has(vcpu_feature::HAS_EL2) || has(vcpu_feature::HAS_EL2_E2H0) {
        return Err(VcpuRefusal::Nested);
    }
    if !has(vcpu_feature::PSCI_0_2) {
        return Err(VcpuRefusal::NoPsci02);
    }
    if has(vcpu_feature::PMU_V3) {
        return Err(VcpuRefusal::Pmu);
    }
    if has(vcpu_feature::SVE) && !sve_offered {
        return Err(VcpuRefusal::Sve);
    }
    Ok(())
}

/// `KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE`: the id of a
/// 64-bit core register is this plus its offset in `struct kvm_regs` in
/// 32-bit words.
pub(crate) const REALM_REG_CORE_BASE: u64 = 0x6030_0000_0010_0000;
/// The word offset of `regs.pc` in `struct kvm_regs` (after x0..x30, sp).
const CORE_PC_WORD: u64 = 64;

/// `KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG` plus op0 [15:14],
/// op1 [13:11], CRn [10:7], CRm [6:3], op2 [2:0]: `ID_AA64DFR0_EL1`
/// (3, 0, 0, 5, 0).
pub(crate) const ID_AA64DFR0_EL1_REG: u64 = 0x6030_0000_0013_0000 | (3 << 14) | (5 << 3);

/// `KVM_REG_ARM64_SVE_VLS`: `KVM_REG_ARM64 | KVM_REG_SIZE_U512 |
/// KVM_REG_ARM64_SVE | 0xffff`.
pub(crate) const SVE_VLS_REG: u64 = 0x6060_0000_0015_ffff;

/// The registers `KVM_GET_REG_LIST` lists for a realm vCPU with SVE:
/// x0..x30, the PC, `ID_AA64DFR0_EL1` and `KVM_REG_ARM64_SVE_VLS`, the ones
/// [`check_reg_write`] may let through. Without SVE, all but the last
/// ([`realm_regs`]).
const REALM_REGS_SVE: [u64; 34] = {
    let mut ids = [0u64; 34];
    let mut n = 0;
    while n < 31 {
        ids[n] = REALM_REG_CORE_BASE + 2 * n as u64;
        n += 1;
    }
    ids[31] = REALM_REG_CORE_BASE + CORE_PC_WORD;
    ids[32] = ID_AA64DFR0_EL1_REG;
    ids[33] = SVE_VLS_REG;
    ids
};

/// The registers `KVM_GET_REG_LIST` lists for a realm vCPU, with SVE's if
/// it has SVE.
pub(crate) fn realm_regs(sve: bool) -> &'static [u64] {
    if sve {
        &REALM_REGS_SVE
    } else {
        &REALM_REGS_SVE[..33]
    }
}

/// How far a realm has been built, as register writes see it (in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RealmStage {
    /// No RD yet.
    NoRd,
    /// The RD exists (realm parameters fixed), not activated.
    Created,
    /// Activated (RECs made from the vCPUs), or gone past it.
    Activated,
}

/// Why `KVM_SET_ONE_REG` on a realm vCPU is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegRefusal {
    /// The RMM keeps this register, the host's copy means nothing
    /// (`EINVAL`).
    NotHostState,
    /// Already read into the realm (`EPERM`, as KVM answers for a
    /// finalized vector length).
    Locked,
}

/// Whether `KVM_SET_ONE_REG` of register `id` is allowed on a realm vCPU
/// at `stage`.
///
/// x0..x30 always: before activation x0..x7 seed the REC, afterwards they
/// carry the VMM's answer to a host call or a filtered PSCI call. The PC
/// until the REC is created from it. `ID_AA64DFR0_EL1` (to lower the
/// breakpoints and watchpoints) and `KVM_REG_ARM64_SVE_VLS` (the vector
/// length) until the realm parameters are fixed with the RD. Everything
/// else is the RMM's.
pub(crate) fn check_reg_write(id: u64, stage: RealmStage) -> Result<(), RegRefusal> {
    let locked_from = |from: RealmStage| {
        if stage >= from {
            Err(RegRefusal::Locked)
        } else {
            Ok(())
        }
    };
    if id == ID_AA64DFR0_EL1_REG || id == SVE_VLS_REG {
        return locked_from(RealmStage::Created);
    }
    let word = id.wrapping_sub(REALM_REG_CORE_BASE);
    if word < 2 * 31 && word % 2 == 0 {
        return Ok(());
    }
    if word == CORE_PC_WORD {
        return locked_from(RealmStage::Activated);
    }
    Err(RegRefusal::NotHostState)
}

/// What `RMI_REC_CREATE` reads: the fields of `RmiRecParams` the host
/// sets (the rest of the 4 KiB granule is zero), kept small for the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecParams {
    /// `RmiRecCreateFlags`: RUNNABLE [0].
    pub(crate) flags: u64,
    /// The REC's `RmiRecMpidr`.
    pub(crate) mpidr: u64,
    /// Initial PC.
    pub(crate) pc: u64,
    /// Initial x0..x7.
    pub(crate) gprs: [u64; 8],
}

impl RecParams {
    /// Number of (word index, value) pairs [`RecParams::words`] yields.
    pub(crate) const NR_WORDS: usize = 11;

    /// The words of the `RmiRecParams` granule that hold fields, at their
    /// spec offsets: a zeroed page written with these holds the struct.
    pub(crate) fn words(&self) -> [(usize, u64); Self::NR_WORDS] {
        use core::mem::offset_of;
        let gprs = offset_of!(RmiRecParams, gprs) / 8;
        let g = |i: usize| (gprs + i, self.gprs[i]);
        [
            (offset_of!(RmiRecParams, flags) / 8, self.flags),
            (offset_of!(RmiRecParams, mpidr) / 8, self.mpidr),
            (offset_of!(RmiRecParams, pc) / 8, self.pc),
            g(0),
            g(1),
            g(2),
            g(3),
            g(4),
            g(5),
            g(6),
            g(7),
        ]
    }
}

/// The most RECs one realm can have: `2^MAX_RECS_ORDER - 1`.
pub(crate) fn max_recs(features: &RmiFeatureRegs) -> u64 {
    (1u64 << features.f1.max_recs_order()) - 1
}

/// The REC params of the vCPU that becomes REC number `position` of a realm
/// with SVE vectors of `realm_sve_vl` bytes (0 without SVE), or why it
/// cannot. Only vCPU 0 is runnable at creation: the others wait for
/// PSCI `CPU_ON` from the realm, as the RMM only lets a REC turn another
/// on (a REC made runnable at creation would also be measured).
pub(crate) fn rec_params(
    position: u64,
    vcpu: &VcpuSetup,
    max: u64,
    realm_sve_vl: u32,
) -> Result<RecParams, VcpuRefusal> {
    if !vcpu.initialized {
        return Err(VcpuRefusal::NotInitialized);
    }
    if vcpu.el1_32bit {
        return Err(VcpuRefusal::AArch32);
    }
    if vcpu.has_el2 {
        return Err(VcpuRefusal::Nested);
    }
    if !vcpu.psci_0_2 {
        return Err(VcpuRefusal::NoPsci02);
    }
    if vcpu.sve_vl != realm_sve_vl {
        return Err(VcpuRefusal::SveVl {
            vcpu: vcpu.sve_vl,
            realm: realm_sve_vl,
        });
    }
    if position >= max {
        return Err(VcpuRefusal::TooMany { max });
    }
    if u64::from(vcpu.id) != position {
        return Err(VcpuRefusal::IdOutOfOrder {
            position,
            id: vcpu.id,
        });
    }
    let boot = position == 0;
    if boot && vcpu.powered_off {
        return Err(VcpuRefusal::BootVcpuOff);
    }
    let mpidr = RmiRecMpidr::from_index(position).ok_or(VcpuRefusal::TooMany { max })?;
    Ok(RecParams {
        flags: if boot { REC_PARAMS_FLAG_RUNNABLE } else { 0 },
        mpidr: mpidr.raw(),
        pc: vcpu.pc,
        gprs: vcpu.gprs,
    })
}

/// A REC: its granule and the auxiliary granules the RMM took for it.
///
/// # Invariants
///
/// While `rec` is `Some` the RMM may hold it and every granule in `aux` as
/// part of a REC; they leave only through `REC_DESTROY`, or are leaked.
pub(crate) struct Rec<'r, C: SmcConduit, P: PageSource, S: GranuleSet<'r, C, P>> {
    rmi: &'r Rmi<C, P>,
    rec: Option<DelegatedGranule<'r, C, P>>,
    aux: S,
    index: u64,
}

impl<'r, C: SmcConduit, P: PageSource, S: GranuleSet<'r, C, P>> Rec<'r, C, P, S> {
    /// Creates REC number `index` of the NEW realm `rd` from `params`
    /// (`RMI_REC_CREATE`); `aux` will hold its auxiliary granules.
    ///
    /// Every page it needs is allocated before the first call, so running
    /// out of memory leaves nothing behind.
    ///
    /// # Errors
    ///
    /// [`SroError::NoMemory`], or the RMM's error. After an RMM error the
    /// granules it may still hold are leaked (and counted), never freed.
    pub(crate) fn create(
        rmi: &'r Rmi<C, P>,
        rd: Granule,
        index: u64,
        params: &RecParams,
        mut aux: S,
    ) -> Result<Self, SroError> {
        if !aux.reserve(REC_AUX_GRANULES) {
            return Err(SroError::NoMemory);
        }
        let mut pool: [Option<P::Page>; REC_AUX_GRANULES] =
            core::array::from_fn(|_| rmi.pages().alloc());
        if pool.iter().any(Option::is_none) {
            return Err(SroError::NoMemory);
        }
        let page = rmi.pages().alloc().ok_or(SroError::NoMemory)?;
        if !params
            .words()
            .iter()
            .all(|(i, w)| P::write_words(&page, *i, &[*w]))
        {
            return Err(SroError::NoMemory);
        }
        let rec = DelegatedGranule::alloc(rmi)?;
        let first = rec_create_call(rd, rec.granule(), P::granule(&page));
        let mut supply = || {
            pool.iter_mut()
                .find_map(Option::take)
                .or_else(|| rmi.pages().alloc())
        };
        // On failure `rec` and `aux` drop: undelegated, or leaked if the
        // RMM still holds them.
        run_from(rmi, &first, &mut aux, &mut supply)?;
        Ok(Self {
            rmi,
            rec: Some(rec),
            aux,
            index,
        })
    }

    /// The REC granule (what `REC_ENTER` and `PSCI_COMPLETE` name).
    pub(crate) fn granule(&self) -> Option<Granule> {
        self.rec.as_ref().map(DelegatedGranule::granule)
    }

    /// Its number in the realm (its MPIDR's index, its vCPU's id).
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// `RMI_REC_DESTROY`: the RMM gives back the auxiliary granules, which
    /// are undelegated and freed, and then the REC granule. Idempotent.
    ///
    /// # Errors
    ///
    /// The RMM's error; the REC's granules are then leaked when it drops.
    pub(crate) fn destroy(&mut self) -> Result<(), SroError> {
        let Some(rec) = self.rec.as_ref() else {
            return Ok(());
        };
        let first = rec_destroy_call(rec.granule());
        match run_from(self.rmi, &first, &mut self.aux, &mut || None) {
            Ok(_) => {
                // DELEGATED again: dropping it undelegates and frees.
                self.rec = None;
                Ok(())
            }
            Err(e) => {
                // Still a REC for the RMM: the undelegate as it drops is
                // refused, and the page is leaked and counted.
                self.rec = None;
                Err(e)
            }
        }
    }
}

impl<'r, C: SmcConduit, P: PageSource, S: GranuleSet<'r, C, P>> Drop for Rec<'r, C, P, S> {
    fn drop(&mut self) {
        // On failure the REC granule is leaked and counted by `destroy`,
        // and the auxiliary granules the RMM kept as `aux` drops.
        let _ = self.destroy();
    }
}
