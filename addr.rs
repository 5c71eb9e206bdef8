// SPDX-License-Identifier: GPL-2.0

//! Addresses as the RMI sees them: granules and granule ranges (PAs),
//! IPAs, and RTT levels.
//!
//! With 4 KiB granules each RTT level resolves 9 IPA bits above the 12-bit
//! page offset: level 3 maps pages, level 0 bits [47:39], and level -1
//! (FEAT_LPA2 only) bits [51:48].
//!
//! Part of the sans-IO core (`core` only), at the bottom of the ladder: every
//! other core file passes these types instead of bare integers. They are built
//! only through checked constructors, and all arithmetic on them is checked.

/// The RMI granule size (`RMI_GRANULE_SIZE_4KB`); the host's `PAGE_SIZE`
/// must match it (`RMI_RMM_CONFIG_SET`).
pub(crate) const GRANULE_SIZE: u64 = 1 << GRANULE_SHIFT;

/// log2 of [`GRANULE_SIZE`].
pub(crate) const GRANULE_SHIFT: u32 = 12;

/// One past the highest PA the RMI can name: `RmiAddrRangeDesc4KB.addr` is
/// PA[51:12]. A range's exclusive top may equal it.
pub(crate) const PA_LIMIT: u64 = 1 << 52;

/// The physical address of a granule: 4 KiB aligned and below [`PA_LIMIT`]
/// (or equal to it, as the exclusive top of a range).
///
/// # Invariants
///
/// `self.0` is a multiple of [`GRANULE_SIZE`] and at most [`PA_LIMIT`].
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Granule(u64);

impl Granule {
    /// Physical address 0.
    pub(crate) const ZERO: Self = Self(0);

    /// The granule at `pa`, or `None` if `pa` is unaligned or out of range.
    pub(crate) const fn new(pa: u64) -> Option<Self> {
        if pa % GRANULE_SIZE != 0 || pa > PA_LIMIT {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(Self(pa))
    }

    /// The physical address, for an RMI argument register.
    pub(crate) const fn pa(self) -> u64 {
        self.0
    }

    /// The granule `n` granules above this one, if it is still in range.
    pub(crate) const fn checked_add(self, n: u64) -> Option<Self> {
        match n.checked_mul(GRANULE_SIZE) {
            Some(bytes) => match self.0.checked_add(bytes) {
                Some(pa) => Self::new(pa),
                None => None,
            },
            None => None,
        }
    }

    /// Whether the address is a multiple of `align` bytes (a power of two).
    pub(crate) const fn is_aligned(self, align: u64) -> bool {
        align.is_power_of_two() && self.0 & (align - 1) == 0
    }
}

impl core::fmt::Display for Granule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The granules in `[base, top)`.
///
/// # Invariants
///
/// `base <= top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GranuleRange {
    base: Granule,
    top: Granule,
}

impl GranuleRange {
    /// `[base, top)`, or `None` if `top` is below `base`.
    pub(crate) const fn new(base: Granule, top: Granule) -> Option<Self> {
        if top.0 < base.0 {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(Self { base, top })
    }

    /// The `count` granules starting at `base`, if they stay in range.
    pub(crate) const fn from_count(base: Granule, count: u64) -> Option<Self> {
        match base.checked_add(count) {
            // INVARIANT: `top >= base` since `count` is unsigned.
            Some(top) => Some(Self { base, top }),
            None => None,
        }
    }

    /// The first granule.
    pub(crate) const fn base(&self) -> Granule {
        self.base
    }

    /// The first granule past the range.
    pub(crate) const fn top(&self) -> Granule {
        self.top
    }

    /// The number of granules.
    pub(crate) const fn count(&self) -> u64 {
        (self.top.0 - self.base.0) / GRANULE_SIZE
    }

    /// Whether the range holds no granule.
    pub(crate) const fn is_empty(&self) -> bool {
        self.top.0 == self.base.0
    }

    /// The part from `mid` on, if `mid` is within `[base, top]`.
    pub(crate) const fn from(&self, mid: Granule) -> Option<Self> {
        if mid.0 < self.base.0 || mid.0 > self.top.0 {
            return None;
        }
        Some(Self {
            base: mid,
            top: self.top,
        })
    }

    /// The part below `mid`, if `mid` is within `[base, top]`.
    pub(crate) const fn below(&self, mid: Granule) -> Option<Self> {
        if mid.0 < self.base.0 || mid.0 > self.top.0 {
            return None;
        }
        Some(Self {
            base: self.base,
            top: mid,
        })
    }

    /// The granules in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Granule> {
        let base = self.base;
        // `checked_add` cannot fail below `top` (invariant), so nothing is skipped.
        (0..self.count()).filter_map(move |i| base.checked_add(i))
    }
}

impl core::fmt::Display for GranuleRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "[{}, {})", self.base, self.top)
    }
}

/// An RTT level, -1 to 3.
///
/// # Invariants
///
/// `-1 <= self.0 <= 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RttLevel(i8);

impl RttLevel {
    /// The level `level`, if it exists with 4 KiB granules.
    pub(crate) const fn new(level: i8) -> Option<Self> {
        if level < -1 || level > 3 {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(Self(level))
    }

    /// The level number.
    pub(crate) const fn get(self) -> i8 {
        self.0
    }

    /// The level as an RMI argument register (two's complement).
    pub(crate) const fn raw(self) -> u64 {
        // CAST: Sign extension is the encoding.
        self.0 as i64 as u64
    }

    /// The next level down, if this is not the leaf.
    pub(crate) const fn below(self) -> Option<Self> {
        Self::new(self.0 + 1)
    }

    /// The level above, if this is not -1.
    pub(crate) const fn above(self) -> Option<Self> {
        Self::new(self.0 - 1)
    }

    /// Bytes one entry at this level maps.
    pub(crate) const fn entry_size(self) -> u64 {
        1 << self.entry_shift()
    }

    /// log2 of the bytes one entry at this level maps.
    pub(crate) const fn entry_shift(self) -> u32 {
        // CAST: `3 - self.0` is 0..=4 (invariant).
        12 + 9 * (3 - self.0) as u32
    }
}

/// An intermediate physical address of a realm.
///
/// # Invariants
///
/// `self.0 <= 2^52`, the end of the largest IPA space there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ipa(u64);

impl Ipa {
    /// The IPA `ipa`, if at most 2^52 (the end of the largest IPA space,
    /// which a range's top may be).
    pub(crate) const fn new(ipa: u64) -> Option<Self> {
        if ipa > 1 << 52 {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(Self(ipa))
    }

    /// The address, for an RMI argument.
    pub(crate) const fn get(self) -> u64 {
        self.0
    }

    /// Rounded down to a multiple of `size` (a power of two).
    pub(crate) const fn align_down(self, size: u64) -> Self {
        // INVARIANT: Rounding down keeps it at most 2^52.
        Self(self.0 & !(size.wrapping_sub(1)))
    }
}
