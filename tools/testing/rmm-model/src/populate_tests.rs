// SPDX-License-Identifier: GPL-2.0

//! `KVM_ARM_RMI_POPULATE` request checks and progress accounting.

use crate::addr::GRANULE_SIZE;
use crate::populate::{
    advance,
    check,
    PopulateArgs,
    PopulateError,
    POPULATE_FLAGS_MEASURE, //
};

const G: u64 = GRANULE_SIZE;

fn args(base: u64, size: u64, source_uaddr: u64) -> PopulateArgs {
    PopulateArgs {
        base,
        size,
        source_uaddr,
        flags: POPULATE_FLAGS_MEASURE,
        reserved: 0,
    }
}

#[test]
fn each_refusal_has_its_reason() {
    let ok = args(0x8000_0000, 4 * G, 0x7f00_0000_0000);
    assert!(matches!(check(&ok, 40), Ok(Some(r)) if r.granules == 4 && r.measure));
    let cases = [
        (PopulateArgs { reserved: 1, ..ok }, PopulateError::Reserved),
        (PopulateArgs { flags: 2, ..ok }, PopulateError::Reserved),
        (
            PopulateArgs {
                base: ok.base + 8,
                ..ok
            },
            PopulateError::Unaligned,
        ),
        (PopulateArgs { size: 3, ..ok }, PopulateError::Unaligned),
        (
            PopulateArgs {
                source_uaddr: ok.source_uaddr + 1,
                ..ok
            },
            PopulateError::Unaligned,
        ),
        (
            PopulateArgs {
                source_uaddr: 0,
                ..ok
            },
            PopulateError::NoSource,
        ),
        (
            PopulateArgs {
                base: u64::MAX - G + 1,
                ..ok
            },
            PopulateError::Wraps,
        ),
        (
            PopulateArgs {
                source_uaddr: u64::MAX - G + 1,
                ..ok
            },
            PopulateError::Wraps,
        ),
        // The protected half of a 40-bit space ends at 2^39.
        (
            PopulateArgs {
                base: (1 << 39) - 2 * G,
                ..ok
            },
            PopulateError::NotProtected,
        ),
        (
            PopulateArgs {
                base: 1 << 39,
                ..ok
            },
            PopulateError::NotProtected,
        ),
    ];
    for (a, want) in cases {
        assert_eq!(check(&a, 40), Err(want), "{a:x?}");
    }
    // Exactly up to the end of the protected half is fine.
    let edge = PopulateArgs {
        base: (1 << 39) - 4 * G,
        ..ok
    };
    assert!(
        matches!(check(&edge, 40), Ok(Some(r)) if r.base.get() + r.granules * GRANULE_SIZE == 1 << 39)
    );
}

#[test]
fn an_empty_request_does_nothing_but_is_still_checked() {
    let empty = args(0x1000, 0, 0);
    assert_eq!(check(&empty, 40), Ok(None), "no source needed for nothing");
    assert_eq!(
        check(&PopulateArgs { flags: 4, ..empty }, 40),
        Err(PopulateError::Reserved)
    );
    assert_eq!(
        check(
            &PopulateArgs {
                base: 0x1001,
                ..empty
            },
            40
        ),
        Err(PopulateError::Unaligned)
    );
}

/// The reference: what the uAPI documentation says, written independently
/// of `check`, with 128-bit arithmetic.
fn reference(a: &PopulateArgs, ipa_bits: u8) -> Result<bool, PopulateError> {
    if a.reserved != 0 || a.flags > 1 {
        return Err(PopulateError::Reserved);
    }
    if (a.base | a.size | a.source_uaddr) & (G - 1) != 0 {
        return Err(PopulateError::Unaligned);
    }
    if a.size == 0 {
        return Ok(false);
    }
    if a.source_uaddr == 0 {
        return Err(PopulateError::NoSource);
    }
    let limit = 1u128 << 64;
    if u128::from(a.base) + u128::from(a.size) >= limit
        || u128::from(a.source_uaddr) + u128::from(a.size) >= limit
    {
        return Err(PopulateError::Wraps);
    }
    if u128::from(a.base) + u128::from(a.size) > 1u128 << (ipa_bits - 1) {
        return Err(PopulateError::NotProtected);
    }
    Ok(true)
}

/// A small deterministic generator (xorshift64*), so that the run is
/// reproducible without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value that is often aligned, small, near a limit, or 0.
    fn field(&mut self, ipa_bits: u8) -> u64 {
        let r = self.next();
        match r % 8 {
            0 => 0,
            1 => r >> 40 << 12,
            2 => (1u64 << (ipa_bits - 1)).wrapping_sub((r >> 50) << 12),
            3 => 0u64.wrapping_sub(((r >> 52) + 1) << 12),
            4 => (r >> 20) << 12,
            5 => r >> 30,
            6 => (r % 64) << 12,
            _ => r,
        }
    }
}

/// 10^5 random requests: `check` agrees with the reference on every one,
/// and for each accepted one a random sequence of partial calls keeps
/// `base + size` and `source_uaddr + size` fixed, stays valid, and ends
/// with nothing left.
#[test]
fn random_requests_agree_with_the_reference_and_progress_keeps_the_ends() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for i in 0..100_000 {
        let ipa_bits = [32u8, 40, 48, 52][i % 4];
        let mut a = PopulateArgs {
            base: rng.field(ipa_bits),
            size: rng.field(ipa_bits) % (1 << 34),
            source_uaddr: rng.field(ipa_bits),
            flags: if rng.next() % 16 == 0 {
                rng.next() as u32
            } else {
                (rng.next() % 2) as u32
            },
            reserved: if rng.next() % 16 == 0 {
                rng.next() as u32
            } else {
                0
            },
        };
        let got = check(&a, ipa_bits);
        let want = reference(&a, ipa_bits);
        assert_eq!(got.map(|r| r.is_some()), want, "{a:x?} at {ipa_bits} bits");
        if !matches!(want, Ok(true)) {
            continue;
        }
        accepted += 1;
        let (end, source_end) = (a.base + a.size, a.source_uaddr + a.size);
        while a.size > 0 {
            let step = rng.next() % (a.size / G + 2);
            advance(&mut a, step);
            assert_eq!(
                (a.base + a.size, a.source_uaddr + a.size),
                (end, source_end)
            );
            assert!(
                check(&a, ipa_bits).is_ok(),
                "a partial call leaves a valid request"
            );
        }
    }
    // About one in ten is accepted with this generator.
    assert!(
        accepted > 5_000,
        "the generator must reach accepted requests: {accepted}"
    );
}
