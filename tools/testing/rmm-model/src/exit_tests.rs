// SPDX-License-Identifier: GPL-2.0

//! REC exit decoding: every kind of exit TF-RMM reports, with the syndrome
//! as it sanitises it.

use crate::exit::{
    decode,
    Esr,
    FaultKind,
    MmioAccess,
    RecExit,
    RmiExitReason, //
};
use crate::rmi_smc::RmiRecExit;

/// ESR for an exception class.
const fn ec(class: u64) -> u64 {
    class << 26
}

const DABT: u64 = ec(0x24);
const IABT: u64 = ec(0x20);
const ISV: u64 = 1 << 24;
const WNR: u64 = 1 << 6;
const EA: u64 = 1 << 9;
/// Translation fault at level 3; permission fault at level 3.
const FSC_TRANS_L3: u64 = 0x07;
const FSC_PERM_L3: u64 = 0x0f;

/// The unprotected bit of a 40-bit realm.
const SHARED: u64 = 1 << 39;

fn exit(reason: u64) -> RmiRecExit {
    let mut e = RmiRecExit::zeroed();
    e.exit_reason = reason;
    e
}

/// A SYNC exit with `esr`, the fault at `ipa` (as HPFAR) and `far`.
fn sync(esr: u64, ipa: u64, far: u64) -> RmiRecExit {
    let mut e = exit(0);
    e.esr = esr;
    e.hpfar = (ipa >> 12) << 4;
    e.far = far;
    e
}

#[test]
fn reasons_round_trip_and_unknown_ones_are_kept() {
    for raw in 0..=10 {
        assert!(!matches!(
            RmiExitReason::from_raw(raw),
            RmiExitReason::Unknown(_)
        ));
    }
    assert_eq!(RmiExitReason::from_raw(11), RmiExitReason::Unknown(11));
    assert_eq!(
        RmiExitReason::from_raw(u64::MAX),
        RmiExitReason::Unknown(u64::MAX)
    );
}

#[test]
fn aborts_at_protected_ipas_are_faults_to_map() {
    let at = 0x1234_5000;
    assert_eq!(
        decode(&sync(DABT | FSC_TRANS_L3, at, 0), 40),
        RecExit::ProtectedFault {
            ipa: at,
            exec: false,
            kind: FaultKind::Translation
        }
    );
    assert_eq!(
        decode(&sync(IABT | FSC_PERM_L3, at, 0), 40),
        RecExit::ProtectedFault {
            ipa: at,
            exec: true,
            kind: FaultKind::Permission
        }
    );
    // The last protected page of a 40-bit space; with 52 bits, far up.
    assert!(matches!(
        decode(&sync(DABT | FSC_TRANS_L3, SHARED - 0x1000, 0), 40),
        RecExit::ProtectedFault { ipa, .. } if ipa == SHARED - 0x1000
    ));
    let high = (1 << 50) + 0x7000;
    assert!(matches!(
        decode(&sync(DABT | FSC_TRANS_L3, high, 0), 52),
        RecExit::ProtectedFault { ipa, .. } if ipa == high
    ));
}

#[test]
fn aborts_at_unprotected_ipas_are_shared_faults_with_the_access_if_described() {
    let gpa = 0x0900_0000;
    // A 4-byte write of 0xdead_beef_cafe at offset 0x10: SRT is 0 and the
    // value is in gprs[0], truncated to the access.
    let mut e = sync(
        DABT | ISV | (2 << 22) | WNR | FSC_TRANS_L3,
        SHARED | gpa,
        0x10,
    );
    e.gprs[0] = 0xdead_beef_cafe;
    assert_eq!(
        decode(&e, 40),
        RecExit::SharedFault {
            gpa,
            kind: FaultKind::Translation,
            access: Some(MmioAccess {
                gpa: gpa | 0x10,
                write: true,
                len: 4,
                data: 0xbeef_cafe
            })
        }
    );
    // An 8-byte read: no data.
    let e = sync(DABT | ISV | (3 << 22) | FSC_TRANS_L3, SHARED | gpa, 0xff8);
    assert_eq!(
        decode(&e, 40),
        RecExit::SharedFault {
            gpa,
            kind: FaultKind::Translation,
            access: Some(MmioAccess {
                gpa: gpa | 0xff8,
                write: false,
                len: 8,
                data: 0
            })
        }
    );
    // No syndrome (for example a load pair): nothing to emulate.
    assert_eq!(
        decode(&sync(DABT | FSC_PERM_L3, SHARED | gpa, 0), 40),
        RecExit::SharedFault {
            gpa,
            kind: FaultKind::Permission,
            access: None
        }
    );
    // The RMM never reports a fetch from an unprotected IPA.
    assert_eq!(
        decode(&sync(IABT | FSC_TRANS_L3, SHARED | gpa, 0), 40),
        RecExit::Unhandled
    );
}

#[test]
fn broken_reports_are_unhandled() {
    // An IPA beyond the realm's space.
    assert_eq!(
        decode(&sync(DABT | FSC_TRANS_L3, 2 * SHARED, 0), 40),
        RecExit::Unhandled
    );
    // An exit the RMM does not describe: ESR, FAR and HPFAR zero.
    assert_eq!(decode(&exit(0), 40), RecExit::Unhandled);
    // Planes and device assignment, and unknown reasons.
    for reason in [7, 8, 9, 10, 11, 1 << 40] {
        assert_eq!(decode(&exit(reason), 40), RecExit::Unhandled, "{reason}");
    }
    // An IPA size no realm has.
    assert_eq!(
        decode(&sync(DABT | FSC_TRANS_L3, 0x1000, 0), 0),
        RecExit::Unhandled
    );
}

#[test]
fn other_exits_carry_their_fields() {
    assert_eq!(
        decode(&sync(DABT | EA | 0x10, 0x1000, 0), 40),
        RecExit::ExternalAbort
    );
    // ICC_* accesses: a write carries the value, a read none.
    let sys = ec(0x18) | (3 << 20) | (12 << 10) | (11 << 1);
    let mut w = sync(sys, 0, 0);
    w.gprs[0] = 0xf0;
    assert_eq!(
        decode(&w, 40),
        RecExit::SysReg {
            esr: Esr(sys),
            read: false,
            value: 0xf0
        }
    );
    let r = sync(sys | 1, 0, 0);
    assert!(matches!(
        decode(&r, 40),
        RecExit::SysReg {
            read: true,
            value: 0,
            ..
        }
    ));
    assert_eq!(decode(&sync(ec(1), 0, 0), 40), RecExit::Wfx { wfe: false });
    assert_eq!(
        decode(&sync(ec(1) | 1, 0, 0), 40),
        RecExit::Wfx { wfe: true }
    );
    assert_eq!(decode(&exit(1), 40), RecExit::Interrupt);
    assert_eq!(decode(&exit(2), 40), RecExit::Interrupt);
    let mut p = exit(3);
    p.gprs[0] = 0xc400_0003;
    p.gprs[1] = 0x101;
    assert_eq!(
        decode(&p, 40),
        RecExit::Psci {
            fid: 0xc400_0003,
            target: 0x101
        }
    );
    let mut rc = exit(4);
    rc.ripas_base = 0x20_0000;
    rc.ripas_top = 0x40_0000;
    rc.ripas_value = 0;
    assert_eq!(
        decode(&rc, 40),
        RecExit::RipasChange {
            base: 0x20_0000,
            top: 0x40_0000,
            ripas: 0
        }
    );
    let mut hc = exit(5);
    hc.imm = 0x77;
    assert_eq!(decode(&hc, 40), RecExit::HostCall { imm: 0x77 });
    assert_eq!(decode(&exit(6), 40), RecExit::SError);
}

#[test]
fn syndrome_fields() {
    let e = Esr(DABT | ISV | (1 << 22) | (1 << 15) | WNR | 0x0b);
    assert_eq!(
        (e.ec(), e.isv(), e.access_bytes(), e.write()),
        (0x24, true, 2, true)
    );
    assert_eq!(FaultKind::of(e.fsc()), FaultKind::AccessFlag);
    assert_eq!(FaultKind::of(0x04), FaultKind::Translation);
    assert_eq!(FaultKind::of(0x2b), FaultKind::Translation);
    assert_eq!(FaultKind::of(0x10), FaultKind::Other);
}

#[test]
fn exit_words_give_every_field_the_host_reads() {
    let mut e = RmiRecExit::zeroed();
    e.exit_reason = 5;
    e.esr = 0x9200_0046;
    e.far = 0x123;
    e.hpfar = 0x4560;
    e.gprs = core::array::from_fn(|i| 0x1000 + i as u64);
    e.cntp_ctl = 1;
    e.cntp_cval = 2;
    e.cntv_ctl = 5;
    e.cntv_cval = 0xdead_beef;
    e.ripas_base = 0x8000;
    e.ripas_top = 0x9000;
    e.ripas_value = 1;
    e.imm = 0xabcd;
    e.plane = 0;
    // The bytes the RMM writes at offset 0x800 of the run granule.
    let mut w = [0u64; RmiRecExit::NR_WORDS];
    // SAFETY: `RmiRecExit` is `repr(C)`, integers only, exactly `w`'s size.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (&raw const e).cast::<u64>(),
            w.as_mut_ptr(),
            RmiRecExit::NR_WORDS,
        )
    };
    assert_eq!(RmiRecExit::from_words(&w), e);
    assert_eq!(RmiRecExit::FIRST_WORD, 0x800 / 8);
    // An exit reads the words of those fields alone, each once: 44 of 256.
    let mut read = Vec::new();
    let from_page = RmiRecExit::from_fn(|n| {
        read.push(n);
        w[n]
    });
    assert_eq!(from_page, e);
    let mut distinct = read.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), read.len());
    assert_eq!(read.len(), 44);
    assert!(read.iter().all(|&n| n < RmiRecExit::NR_WORDS));
}
