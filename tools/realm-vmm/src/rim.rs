// SPDX-License-Identifier: GPL-2.0

//! The Realm Initial Measurement, recomputed on the host from what the VMM
//! asked the RMM to do, as TF-RMM main (RMM v2.0) computes it
//! (docs/dev/issue21-rim-token.md):
//!
//! - `REALM_CREATE`: RIM = H(the parameters' measured fields in a zeroed
//!   4 KiB `RmiRealmParams`);
//! - each `RTT_DATA_MAP_INIT`: RIM = H(a 256-byte DATA descriptor holding
//!   the old RIM, the IPA, the flags and, when measured, H(the granule));
//! - each runnable `REC_CREATE`: RIM = H(a 256-byte REC descriptor holding
//!   the old RIM and H(the measured fields of a zeroed `RmiRecParams`)).
//!
//! `RTT_INIT_RIPAS` no longer extends it (RMM v2.0).

use sha2::{
    Digest,
    Sha256,
    Sha384,
    Sha512, //
};

/// The measurement algorithm, as `RmiRealmParams.algorithm` encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// 0.
    Sha256,
    /// 1.
    Sha512,
    /// 2.
    Sha384,
}

impl HashAlgorithm {
    /// The `RmiRealmParams.algorithm` value.
    pub fn raw(self) -> u8 {
        match self {
            Self::Sha256 => 0,
            Self::Sha512 => 1,
            Self::Sha384 => 2,
        }
    }

    /// The name the token's hash algorithm claim gives.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
            Self::Sha384 => "sha-384",
        }
    }

    /// The algorithm named `name` in a token.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512, Self::Sha384]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// `data` hashed.
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
        }
    }
}

/// The fields of `RmiRealmParams` the RIM measures; the rest are zero in
/// what is hashed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeasuredRealmParams {
    /// `flags0` (LPA2, SVE, PMU, DA, MEC policy), at 0x000.
    pub flags0: u64,
    /// `s2sz`, the IPA size, at 0x008.
    pub s2sz: u32,
    /// `sve_vl`, at 0x010.
    pub sve_vl: u32,
    /// `num_bps`, at 0x018.
    pub num_bps: u32,
    /// `num_wps`, at 0x020.
    pub num_wps: u32,
    /// `pmu_num_ctrs`, at 0x028.
    pub pmu_num_ctrs: u32,
}

/// The fields of `RmiRecParams` the RIM measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeasuredRecParams {
    /// `flags` (RUNNABLE, bit 0), at 0x000.
    pub flags: u64,
    /// `pc`, at 0x200.
    pub pc: u64,
    /// `gprs[0..8]`, at 0x300.
    pub gprs: [u64; 8],
}

/// `RmiRecCreateFlags.RUNNABLE`.
pub const REC_RUNNABLE: u64 = 1 << 0;

/// A granule.
const GRANULE: usize = 4096;
/// A measurement descriptor.
const DESC_LEN: usize = 0x100;
/// The RIM's field in a descriptor: 64 bytes at 0x10.
const DESC_RIM: usize = 0x10;

/// Writes `v` little-endian at `at` of `buf`.
fn put(buf: &mut [u8], at: usize, v: &[u8]) {
    buf[at..at + v.len()].copy_from_slice(v);
}

/// A realm's RIM as it is extended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rim {
    algorithm: HashAlgorithm,
    value: Vec<u8>,
}

impl Rim {
    /// The RIM after `REALM_CREATE` with `params`, measured with
    /// `algorithm` (which `params` also carries, at 0x030).
    pub fn new(algorithm: HashAlgorithm, params: &MeasuredRealmParams) -> Self {
        let mut p = vec![0u8; GRANULE];
        put(&mut p, 0x000, &params.flags0.to_le_bytes());
        put(&mut p, 0x008, &params.s2sz.to_le_bytes());
        put(&mut p, 0x010, &params.sve_vl.to_le_bytes());
        put(&mut p, 0x018, &params.num_bps.to_le_bytes());
        put(&mut p, 0x020, &params.num_wps.to_le_bytes());
        put(&mut p, 0x028, &params.pmu_num_ctrs.to_le_bytes());
        put(&mut p, 0x030, &[algorithm.raw()]);
        Self {
            algorithm,
            value: algorithm.hash(&p),
        }
    }

    /// A descriptor of type `kind` holding the current RIM.
    fn descriptor(&self, kind: u64) -> Vec<u8> {
        let mut d = vec![0u8; DESC_LEN];
        put(&mut d, 0x00, &kind.to_le_bytes());
        put(&mut d, 0x08, &(DESC_LEN as u64).to_le_bytes());
        put(&mut d, DESC_RIM, &self.value);
        d
    }

    /// `RTT_DATA_MAP_INIT` of a granule at `ipa`: with its content
    /// `Some(bytes)` (at most 4 KiB, the rest zero) when measured, `None`
    /// when not (the RIM still moves).
    pub fn data(&mut self, ipa: u64, content: Option<&[u8]>) {
        let mut d = self.descriptor(0);
        put(&mut d, 0x50, &ipa.to_le_bytes());
        if let Some(bytes) = content {
            put(&mut d, 0x58, &1u64.to_le_bytes());
            let mut g = vec![0u8; GRANULE];
            let n = bytes.len().min(GRANULE);
            g[..n].copy_from_slice(&bytes[..n]);
            put(&mut d, 0x60, &self.algorithm.hash(&g));
        }
        self.value = self.algorithm.hash(&d);
    }

    /// `RMI_REC_CREATE` with `params`: only a runnable REC is measured.
    pub fn rec(&mut self, params: &MeasuredRecParams) {
        if params.flags & REC_RUNNABLE == 0 {
            return;
        }
        let mut r = vec![0u8; GRANULE];
        put(&mut r, 0x000, &params.flags.to_le_bytes());
        put(&mut r, 0x200, &params.pc.to_le_bytes());
        for (i, x) in params.gprs.iter().enumerate() {
            put(&mut r, 0x300 + 8 * i, &x.to_le_bytes());
        }
        let mut d = self.descriptor(1);
        put(&mut d, 0x50, &self.algorithm.hash(&r));
        self.value = self.algorithm.hash(&d);
    }

    /// The measurement, as the token's RIM claim carries it.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }
}

/// `RmiRealmFlags0.LPA2`.
pub const FLAGS0_LPA2: u64 = 1 << 0;

/// The measured realm parameters kvm-rmi sends for a realm without SVE or
/// a PMU (Documentation/virt/kvm/arm/rmi.rst, "The realm's measured
/// parameters"): the IPA size `s2sz`, LPA2 if the host's stage 2 uses it,
/// and the breakpoints and watchpoints of the VM's `ID_AA64DFR0_EL1`
/// (`BRPs` [15:12], `WRPs` [23:20], each the count minus one, at least 1).
pub fn kvm_rmi_realm_params(s2sz: u32, lpa2: bool, dfr0: u64) -> MeasuredRealmParams {
    let field = |shift: u32| u32::try_from((dfr0 >> shift) & 0xf).unwrap_or(0).max(1);
    MeasuredRealmParams {
        flags0: if lpa2 { FLAGS0_LPA2 } else { 0 },
        s2sz,
        sve_vl: 0,
        num_bps: field(12),
        num_wps: field(20),
        pmu_num_ctrs: 0,
    }
}

/// A realm's RIM under each algorithm kvm-rmi may choose (SHA-256 when the
/// RMM offers it, else SHA-512), extended in step: the token says which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RimCandidates(Vec<Rim>);

impl RimCandidates {
    /// After `REALM_CREATE` with `params`.
    pub fn new(params: &MeasuredRealmParams) -> Self {
        Self(
            [HashAlgorithm::Sha256, HashAlgorithm::Sha512]
                .into_iter()
                .map(|a| Rim::new(a, params))
                .collect(),
        )
    }

    /// See [`Rim::data`].
    pub fn data(&mut self, ipa: u64, content: Option<&[u8]>) {
        self.0.iter_mut().for_each(|r| r.data(ipa, content));
    }

    /// Each page of `data` populated and measured at `base`, `size` bytes
    /// (whole pages; past `data`, zero pages), as `KVM_ARM_RMI_POPULATE`
    /// with `MEASURE` does it: one `RTT_DATA_MAP_INIT` per page, in order.
    pub fn populate(&mut self, base: u64, size: u64, data: &[u8]) {
        let mut chunks = data.chunks(GRANULE);
        let mut ipa = base;
        while ipa < base.saturating_add(size) {
            self.data(ipa, Some(chunks.next().unwrap_or(&[])));
            ipa = ipa.saturating_add(GRANULE as u64);
        }
    }

    /// See [`Rim::rec`].
    pub fn rec(&mut self, params: &MeasuredRecParams) {
        self.0.iter_mut().for_each(|r| r.rec(params));
    }

    /// Each algorithm with its RIM.
    pub fn values(&self) -> Vec<(HashAlgorithm, Vec<u8>)> {
        self.0
            .iter()
            .map(|r| (r.algorithm(), r.value().to_vec()))
            .collect()
    }
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors derived with Python's hashlib from the layouts in
    /// docs/dev/issue21-rim-token.md §1.6 (not yet from a live RMM):
    /// SHA-256, s2sz 40, one breakpoint and one watchpoint field each.
    fn params() -> MeasuredRealmParams {
        MeasuredRealmParams {
            s2sz: 40,
            num_bps: 1,
            num_wps: 1,
            ..Default::default()
        }
    }

    #[test]
    fn vectors_of_creation_a_measured_page_and_a_runnable_rec() {
        let mut rim = Rim::new(HashAlgorithm::Sha256, &params());
        assert_eq!(
            hex(rim.value()),
            "045cb3602843a6845cb710fbbfbb92f0c7d611afe0106ac2953e46950a70c42b"
        );
        rim.data(0x8000_0000, Some(&[0u8; 4096]));
        assert_eq!(
            hex(rim.value()),
            "c082740dedd78467fe9c8cd6fd513d67d962502ea97fd63758216a9fd0ed38fc"
        );
        rim.rec(&MeasuredRecParams {
            flags: REC_RUNNABLE,
            pc: 0x8000_0000,
            gprs: [0; 8],
        });
        assert_eq!(
            hex(rim.value()),
            "9d099c3b8a99bf5949aa28a9e5f6131181061eb48a34ce612893c8c2684f9e88"
        );
    }

    #[test]
    fn what_moves_the_rim_and_what_does_not() {
        let base = Rim::new(HashAlgorithm::Sha256, &params());
        // A REC that is not runnable is not measured.
        let mut r = base.clone();
        r.rec(&MeasuredRecParams::default());
        assert_eq!(r, base);
        // Unmeasured data still extends it, differently from measured.
        let (mut a, mut b) = (base.clone(), base.clone());
        a.data(0x8000_0000, None);
        b.data(0x8000_0000, Some(&[]));
        assert_ne!(a, base);
        assert_ne!(a, b);
        // A short page is zero-padded: the same as the zero page.
        let mut c = base.clone();
        c.data(0x8000_0000, Some(&[0u8; 4096]));
        assert_eq!(b, c);
        // The IPA and the order count.
        let mut d = base.clone();
        d.data(0x8000_1000, Some(&[]));
        assert_ne!(d, b);
        // Each algorithm gives its size, named as in the token.
        for (alg, len) in [
            (HashAlgorithm::Sha256, 32),
            (HashAlgorithm::Sha384, 48),
            (HashAlgorithm::Sha512, 64),
        ] {
            let mut r = Rim::new(alg, &params());
            r.data(0x8000_0000, Some(b"x"));
            assert_eq!(r.value().len(), len);
            assert_eq!(HashAlgorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(HashAlgorithm::from_name("md5"), None);
    }

    #[test]
    fn kvm_rmi_params_and_populate_follow_the_vectors() {
        // QEMU's max CPU: 6 breakpoints, 4 watchpoints (fields 5 and 3).
        let p = kvm_rmi_realm_params(40, false, 0x0000_0000_0030_5000);
        assert_eq!((p.flags0, p.s2sz, p.num_bps, p.num_wps), (0, 40, 5, 3));
        // Fields of 0 (the reserved encoding) become 1, as the module does.
        assert_eq!(
            kvm_rmi_realm_params(48, true, 0),
            MeasuredRealmParams {
                flags0: FLAGS0_LPA2,
                s2sz: 48,
                num_bps: 1,
                num_wps: 1,
                ..Default::default()
            }
        );
        // The vector of the first test, through populate: one zero page.
        let mut c = RimCandidates::new(&params());
        c.populate(0x8000_0000, 4096, &[]);
        c.rec(&MeasuredRecParams {
            flags: REC_RUNNABLE,
            pc: 0x8000_0000,
            gprs: [0; 8],
        });
        let v = c.values();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, HashAlgorithm::Sha256);
        assert_eq!(
            hex(&v[0].1),
            "9d099c3b8a99bf5949aa28a9e5f6131181061eb48a34ce612893c8c2684f9e88"
        );
        assert_eq!((v[1].0, v[1].1.len()), (HashAlgorithm::Sha512, 64));
        // Three pages from five bytes: the data, then two zero pages.
        let (mut a, mut b) = (RimCandidates::new(&params()), RimCandidates::new(&params()));
        a.populate(0x8000_0000, 3 * 4096, b"12345");
        b.data(0x8000_0000, Some(b"12345"));
        b.data(0x8000_1000, Some(&[]));
        b.data(0x8000_2000, Some(&[]));
        assert_eq!(a, b);
    }
}
