// SPDX-License-Identifier: GPL-2.0

//! Realm parameters from the RMM's features and the VM type.

use crate::addr::Granule;
use crate::model::QEMU_FEATURES;
use crate::realm::{
    realm_params,
    realm_shape,
    ParamsError,
    RealmConfig, //
};
use crate::rmi_cmds::RmiFeatureRegs;
use crate::rmi_smc::{
    RmiFeatures0,
    RmiFeatures1,
    RmiFeatures2,
    RmiFeatures3, //
};

fn features(f0: u64, f1: u64) -> RmiFeatureRegs {
    RmiFeatureRegs {
        f0: RmiFeatures0(f0),
        f1: RmiFeatures1(f1),
        f2: RmiFeatures2(0),
        f3: RmiFeatures3(3),
    }
}

fn qemu() -> RmiFeatureRegs {
    features(QEMU_FEATURES[0], QEMU_FEATURES[1])
}

fn cfg(ipa_bits: u8, host_lpa2: bool) -> RealmConfig {
    RealmConfig {
        ipa_bits,
        host_ipa_limit: 52,
        host_lpa2,
    }
}

#[test]
fn default_ipa_size_gives_40_bits_and_two_level_1_roots() {
    let shape = realm_shape(&qemu(), cfg(0, false)).expect("shape");
    assert_eq!(shape.s2sz, 40);
    assert_eq!(shape.geometry.start.get(), 1);
    assert_eq!(shape.geometry.num_root, 2);
    let base = Granule::new(0x8000_2000).expect("aligned");
    let p = realm_params(&qemu(), &shape, base).expect("params");
    assert_eq!(p.flags0, 0);
    assert_eq!(p.s2sz, 40);
    // QEMU's RMM: NUM_BPS 5, NUM_WPS 3, the largest values it accepts.
    assert_eq!((p.num_bps, p.num_wps), (5, 3));
    assert_eq!(p.algorithm, 0, "SHA-256");
    assert_eq!(p.rtt_base, 0x8000_2000);
    assert_eq!(p.rtt_level_start, 1);
    assert_eq!(p.rtt_num_start, 2);
    assert_eq!((p.sve_vl, p.pmu_num_ctrs, p.flags1), (0, 0, 0));
}

#[test]
fn lpa2_hosts_need_an_lpa2_rmm_and_reach_52_bits() {
    let shape = realm_shape(&qemu(), cfg(52, true)).expect("LPA2 RMM");
    assert_eq!(
        (shape.geometry.start.get(), shape.geometry.num_root),
        (0, 16)
    );
    let base = Granule::new(0x10_0000).expect("aligned");
    assert_eq!(realm_params(&qemu(), &shape, base).map(|p| p.flags0), Ok(1));
    let no_lpa2 = features(QEMU_FEATURES[0] & !(1 << 8), QEMU_FEATURES[1]);
    assert_eq!(
        realm_shape(&no_lpa2, cfg(40, true)),
        Err(ParamsError::Lpa2Unsupported)
    );
    assert_eq!(
        realm_shape(&qemu(), cfg(52, false)),
        Err(ParamsError::IpaSize { asked: 52, max: 48 })
    );
}

#[test]
fn ipa_size_is_bounded_by_rmm_host_and_architecture() {
    assert_eq!(
        realm_shape(&qemu(), cfg(31, false)),
        Err(ParamsError::IpaSize { asked: 31, max: 48 })
    );
    let limited = RealmConfig {
        ipa_bits: 48,
        host_ipa_limit: 44,
        host_lpa2: false,
    };
    assert_eq!(
        realm_shape(&qemu(), limited),
        Err(ParamsError::IpaSize { asked: 48, max: 44 })
    );
    // An RMM with S2SZ 40 caps it too.
    let small = features((QEMU_FEATURES[0] & !0xff) | 40, QEMU_FEATURES[1]);
    assert!(realm_shape(&small, cfg(40, false)).is_ok());
    assert_eq!(
        realm_shape(&small, cfg(41, false)),
        Err(ParamsError::IpaSize { asked: 41, max: 40 })
    );
    for bits in 32..=48 {
        assert!(realm_shape(&qemu(), cfg(bits, false)).is_ok(), "{bits}");
    }
}

#[test]
fn hash_and_debug_resources_follow_the_features() {
    let shape = realm_shape(&qemu(), cfg(0, false)).expect("shape");
    let base = Granule::new(0x2000).expect("aligned");
    let sha512_only = features(QEMU_FEATURES[0], QEMU_FEATURES[1] & !(1 << 3));
    assert_eq!(
        realm_params(&sha512_only, &shape, base).map(|p| p.algorithm),
        Ok(1)
    );
    let no_hash = features(QEMU_FEATURES[0], QEMU_FEATURES[1] & !((1 << 3) | (1 << 5)));
    assert_eq!(
        realm_params(&no_hash, &shape, base).err(),
        Some(ParamsError::NoHash)
    );
    let no_bps = features(QEMU_FEATURES[0] & !(0x3f << 14), QEMU_FEATURES[1]);
    assert_eq!(
        realm_params(&no_bps, &shape, base).err(),
        Some(ParamsError::NoDebugResources)
    );
}

/// `words()` writes exactly the struct's bytes into a zeroed granule.
#[test]
fn realm_params_words_are_the_struct_bytes() {
    use crate::rmi_smc::RmiRealmParams;
    let mut p = RmiRealmParams::zeroed();
    p.flags0 = 0x1;
    p.s2sz = 44;
    p.sve_vl = 3;
    p.num_bps = 5;
    p.num_wps = 3;
    p.pmu_num_ctrs = 2;
    p.algorithm = 1;
    p.num_aux_planes = 1;
    for (i, b) in p.rpv.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    p.ats_plane = 7;
    p.rtt_base = 0x8000_0000;
    p.rtt_level_start = -1;
    p.rtt_num_start = 16;
    p.flags1 = 2;
    p.aux_rtt_base = [0x1000, 0x2000, 0x3000];
    let mut page = [0u64; 512];
    for (i, w) in p.words() {
        page[i] = w;
    }
    // SAFETY: `RmiRealmParams` is 4096 bytes of integers, no implicit padding.
    let bytes: &[u8; 4096] = unsafe { &*(&p as *const RmiRealmParams).cast() };
    let page_bytes: Vec<u8> = page.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&page_bytes[..], &bytes[..]);
}
