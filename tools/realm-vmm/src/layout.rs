// SPDX-License-Identifier: GPL-2.0

//! The guest's physical memory map, and where the kernel, initrd and
//! device tree go in RAM.
//!
//! Devices sit low, below RAM, as on QEMU's `virt` machine and in the
//! project's selftests: a realm guest reaches them through the unprotected
//! alias (Linux sets the top IPA bit when it maps a region that is not RAM),
//! and KVM reports their MMIO exits at the address given here. RAM starts at
//! 2 GiB and is exactly the guest_memfd memslots, which the device tree's
//! memory node must match.

use std::fmt;

/// The GICv3 distributor.
pub const GICD_BASE: u64 = 0x0800_0000;
/// The distributor's size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// The first redistributor; one [`GICR_STRIDE`] per vCPU follows.
pub const GICR_BASE: u64 = 0x080a_0000;
/// The redistributor frames of one vCPU (RD and SGI, 64 KiB each).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// The 16550 UART.
pub const UART_BASE: u64 = 0x0900_0000;
/// The UART's MMIO window (its eight registers, at byte offsets).
pub const UART_SIZE: u64 = 0x1000;
/// The UART's SPI (INTID 32 + this).
pub const UART_SPI: u32 = 1;
/// Guest RAM.
pub const RAM_BASE: u64 = 0x8000_0000;

/// The most vCPUs the redistributor region can hold below the UART.
pub const MAX_VCPUS: u32 = ((UART_BASE - GICR_BASE) / GICR_STRIDE) as u32;

/// The 2 MiB alignment the arm64 boot protocol asks of the kernel's base
/// and the most a device tree may take.
const SZ_2M: u64 = 2 << 20;

/// The guest's page size, to which everything placed is aligned (and
/// padded: populate takes whole granules).
pub const PAGE_SIZE: u64 = 4096;

/// The fields of an arm64 `Image` header (Documentation/arch/arm64/booting.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB aligned base.
    pub text_offset: u64,
    /// The memory the image needs from its start, BSS included.
    pub image_size: u64,
}

/// Why a kernel, initrd or memory size cannot be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The file is too short for an `Image` header.
    ShortImage,
    /// The `ARM\x64` magic is missing: not an arm64 `Image`.
    NotAnImage,
    /// RAM is not a whole number of pages, or is too large for the IPA space.
    BadRamSize,
    /// Kernel, initrd and device tree do not fit in RAM.
    NoRoom {
        /// Bytes needed.
        need: u64,
        /// Bytes of RAM.
        have: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortImage => write!(f, "file too short for an arm64 Image header"),
            Self::NotAnImage => write!(f, "not an arm64 Image (no ARM\\x64 magic)"),
            Self::BadRamSize => write!(f, "RAM size must be whole pages and fit the IPA space"),
            Self::NoRoom { need, have } => write!(
                f,
                "kernel, initrd and device tree need {need} bytes, RAM has {have}"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// The little-endian `u64` at `at` of `raw`.
fn le_u64(raw: &[u8], at: usize) -> Option<u64> {
    let bytes = raw.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

impl ImageHeader {
    /// The header's magic, `ARM\x64`, at byte 56.
    const MAGIC: u32 = 0x644d_5241;

    /// Reads the header at the start of `image`.
    pub fn parse(image: &[u8]) -> Result<Self, LayoutError> {
        let magic = image.get(56..60).ok_or(LayoutError::ShortImage)?;
        if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != Self::MAGIC {
            return Err(LayoutError::NotAnImage);
        }
        let text_offset = le_u64(image, 8).ok_or(LayoutError::ShortImage)?;
        let image_size = le_u64(image, 16).ok_or(LayoutError::ShortImage)?;
        // Kernels before 3.17 leave image_size 0 and load at 0x80000.
        Ok(if image_size == 0 {
            Self {
                text_offset: 0x8_0000,
                image_size: 0,
            }
        } else {
            Self {
                text_offset,
                image_size,
            }
        })
    }
}

/// Where one blob goes in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its guest physical address.
    pub base: u64,
    /// Its size, padded to whole pages.
    pub size: u64,
}

impl Region {
    /// One past its end.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// Where the kernel, the initrd and the device tree go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The kernel file, at RAM's 2 MiB aligned base plus its `text_offset`:
    /// also its entry point.
    pub kernel: Region,
    /// The memory the kernel claims from its start, BSS included.
    pub kernel_claim: Region,
    /// The initrd, if any, just below the device tree.
    pub initrd: Option<Region>,
    /// The device tree: the last 2 MiB of RAM (at most 2 MiB, 8-byte
    /// aligned, as the boot protocol asks).
    pub dtb: Region,
}

/// `n` rounded up to whole pages.
fn pages(n: u64) -> Option<u64> {
    n.checked_add(PAGE_SIZE - 1).map(|n| n & !(PAGE_SIZE - 1))
}

impl Placement {
    /// Places a kernel file of `kernel_len` bytes with header `header`, an
    /// initrd of `initrd_len` bytes (if any) and a device tree in `ram_size`
    /// bytes of RAM at [`RAM_BASE`], with IPA space `ipa_bits` wide (RAM
    /// must lie in its protected, lower half).
    pub fn new(
        ram_size: u64,
        ipa_bits: u32,
        header: ImageHeader,
        kernel_len: u64,
        initrd_len: Option<u64>,
    ) -> Result<Self, LayoutError> {
        let half = 1u64
            .checked_shl(ipa_bits.checked_sub(1).ok_or(LayoutError::BadRamSize)?)
            .ok_or(LayoutError::BadRamSize)?;
        let ram_end = RAM_BASE
            .checked_add(ram_size)
            .filter(|&end| end <= half && ram_size.is_multiple_of(PAGE_SIZE) && ram_size > 0)
            .ok_or(LayoutError::BadRamSize)?;
        let too_big = || LayoutError::NoRoom {
            need: u64::MAX,
            have: ram_size,
        };
        let kernel = Region {
            base: RAM_BASE
                .checked_add(header.text_offset)
                .ok_or_else(too_big)?,
            size: pages(kernel_len).ok_or_else(too_big)?,
        };
        let kernel_claim = Region {
            base: kernel.base,
            size: pages(header.image_size.max(kernel_len)).ok_or_else(too_big)?,
        };
        let dtb = Region {
            base: ram_end.checked_sub(SZ_2M).ok_or(LayoutError::NoRoom {
                need: SZ_2M,
                have: ram_size,
            })?,
            size: SZ_2M,
        };
        let initrd = match initrd_len {
            None => None,
            Some(len) => {
                let size = pages(len).ok_or_else(too_big)?;
                let base = dtb.base.checked_sub(size).ok_or_else(too_big)?;
                Some(Region { base, size })
            }
        };
        let low = initrd.map_or(dtb.base, |r| r.base);
        if kernel_claim.end() > low {
            let need = kernel_claim.end().saturating_sub(RAM_BASE)
                + initrd.map_or(0, |r| r.size)
                + dtb.size;
            return Err(LayoutError::NoRoom {
                need,
                have: ram_size,
            });
        }
        Ok(Self {
            kernel,
            kernel_claim,
            initrd,
            dtb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Image` header with `text_offset` and `image_size`.
    fn image(text_offset: u64, image_size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[56..60].copy_from_slice(&0x644d_5241u32.to_le_bytes());
        h
    }

    #[test]
    fn image_headers_are_read_and_checked() {
        assert_eq!(
            ImageHeader::parse(&image(0, 0x200_0000)),
            Ok(ImageHeader {
                text_offset: 0,
                image_size: 0x200_0000
            })
        );
        // Old kernels: image_size 0 means text_offset 0x80000.
        assert_eq!(
            ImageHeader::parse(&image(0x1234, 0)).map(|h| h.text_offset),
            Ok(0x8_0000)
        );
        let mut bad = image(0, 1);
        bad[56] = 0;
        assert_eq!(ImageHeader::parse(&bad), Err(LayoutError::NotAnImage));
        assert_eq!(ImageHeader::parse(&[0; 40]), Err(LayoutError::ShortImage));
    }

    #[test]
    fn kernel_low_device_tree_at_the_top_initrd_below_it() {
        let h = ImageHeader {
            text_offset: 0,
            image_size: 40 << 20,
        };
        let p = Placement::new(512 << 20, 40, h, (30 << 20) + 1, Some(5000)).expect("fits");
        assert_eq!(p.kernel.base, RAM_BASE);
        assert_eq!(p.kernel.size, (30 << 20) + PAGE_SIZE);
        // BSS counts: the claim is image_size.
        assert_eq!(p.kernel_claim.end(), RAM_BASE + (40 << 20));
        assert_eq!(p.dtb.base, RAM_BASE + (510 << 20));
        assert_eq!(p.dtb.end(), RAM_BASE + (512 << 20));
        assert_eq!(
            p.initrd,
            Some(Region {
                base: p.dtb.base - 2 * PAGE_SIZE,
                size: 2 * PAGE_SIZE
            })
        );
        assert_eq!(p.dtb.base % 8, 0);
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let h = ImageHeader {
            text_offset: 0,
            image_size: 60 << 20,
        };
        // The kernel's BSS would run into the initrd.
        assert!(matches!(
            Placement::new(64 << 20, 40, h, 1 << 20, Some(3 << 20)),
            Err(LayoutError::NoRoom { .. })
        ));
        // RAM past the protected half, partial pages, none at all.
        assert_eq!(
            Placement::new(1 << 39, 40, h, 1, None),
            Err(LayoutError::BadRamSize)
        );
        assert_eq!(
            Placement::new((256 << 20) + 1, 40, h, 1, None),
            Err(LayoutError::BadRamSize)
        );
        assert_eq!(
            Placement::new(0, 40, h, 1, None),
            Err(LayoutError::BadRamSize)
        );
        assert_eq!(
            Placement::new(1 << 30, 0, h, 1, None),
            Err(LayoutError::BadRamSize)
        );
        // Sizes near u64::MAX do not wrap.
        assert!(Placement::new(1 << 30, 40, h, u64::MAX, None).is_err());
        assert!(Placement::new(1 << 30, 40, h, 1, Some(u64::MAX)).is_err());
    }
}
