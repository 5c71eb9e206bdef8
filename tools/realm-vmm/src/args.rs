// SPDX-License-Identifier: GPL-2.0

//! The command line: `realm-vmm --kernel IMAGE [--initrd CPIO]
//! [--cmdline ARGS] [--smp N] [--mem SIZE] [--normal | --attest [--token FILE]]`.

use std::fmt;
use std::path::PathBuf;

use crate::layout::{
    MAX_VCPUS,
    PAGE_SIZE, //
};

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The arm64 `Image` to boot.
    pub kernel: PathBuf,
    /// An initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// The number of vCPUs.
    pub smp: u32,
    /// RAM, in bytes.
    pub mem: u64,
    /// A normal VM with the same devices instead of a realm.
    pub normal: bool,
    /// Give the guest a challenge and check the attestation token it
    /// sends back against it and the recomputed RIM (realms only).
    pub attest: bool,
    /// Where to write the token `--attest` got, for a verifier.
    pub token_out: Option<PathBuf>,
}

/// The usage text.
pub const USAGE: &str = "usage: realm-vmm --kernel IMAGE [--initrd CPIO] [--cmdline ARGS] \
                         [--smp N] [--mem SIZE[K|M|G]] [--normal | --attest [--token FILE]]";

/// The command line used without `--cmdline`.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0";

/// What is wrong with a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// An option this VMM does not have.
    Unknown(String),
    /// An option without its value.
    MissingValue(&'static str),
    /// A value that does not parse or is out of range.
    Bad(&'static str, String),
    /// No `--kernel`.
    NoKernel,
    /// `--help`.
    Help,
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(a) => write!(f, "unknown option {a:?}\n{USAGE}"),
            Self::MissingValue(o) => write!(f, "{o} needs a value\n{USAGE}"),
            Self::Bad(o, v) => write!(f, "{o}: bad value {v:?}"),
            Self::NoKernel => write!(f, "--kernel is required\n{USAGE}"),
            Self::Help => write!(f, "{USAGE}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// `SIZE` with an optional `K`, `M` or `G` suffix, in bytes: whole pages,
/// at least 64 MiB.
fn parse_size(v: &str) -> Option<u64> {
    let (digits, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n: u64 = digits.parse().ok()?;
    let bytes = n.checked_mul(1u64 << shift)?;
    (bytes.is_multiple_of(PAGE_SIZE) && bytes >= 64 << 20).then_some(bytes)
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ArgsError> {
        let mut it = args.into_iter();
        let mut kernel = None;
        let mut opts = Self {
            kernel: PathBuf::new(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_string(),
            smp: 1,
            mem: 512 << 20,
            normal: false,
            attest: false,
            token_out: None,
        };
        while let Some(arg) = it.next() {
            let mut value = |name: &'static str| it.next().ok_or(ArgsError::MissingValue(name));
            match arg.as_str() {
                "--kernel" => kernel = Some(PathBuf::from(value("--kernel")?)),
                "--initrd" => opts.initrd = Some(PathBuf::from(value("--initrd")?)),
                "--cmdline" => opts.cmdline = value("--cmdline")?,
                "--smp" => {
                    let v = value("--smp")?;
                    opts.smp = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_VCPUS).contains(n))
                        .ok_or(ArgsError::Bad("--smp", v))?;
                }
                "--mem" => {
                    let v = value("--mem")?;
                    opts.mem = parse_size(&v).ok_or(ArgsError::Bad("--mem", v))?;
                }
                "--normal" => opts.normal = true,
                "--attest" => opts.attest = true,
                "--token" => opts.token_out = Some(PathBuf::from(value("--token")?)),
                "--help" | "-h" => return Err(ArgsError::Help),
                _ => return Err(ArgsError::Unknown(arg)),
            }
        }
        opts.kernel = kernel.ok_or(ArgsError::NoKernel)?;
        if opts.token_out.is_some() && !opts.attest {
            return Err(ArgsError::Bad("--token", "needs --attest".into()));
        }
        if opts.normal && opts.attest {
            return Err(ArgsError::Bad(
                "--attest",
                "a normal VM has no attestation token".into(),
            ));
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, ArgsError> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options_and_defaults() {
        let o = parse(&["--kernel", "Image"]).expect("parses");
        assert_eq!(o.kernel, PathBuf::from("Image"));
        assert_eq!((o.smp, o.mem, o.normal), (1, 512 << 20, false));
        assert_eq!(o.cmdline, DEFAULT_CMDLINE);
        let o = parse(&[
            "--kernel",
            "I",
            "--initrd",
            "c.cpio",
            "--cmdline",
            "quiet",
            "--smp",
            "2",
            "--mem",
            "1G",
            "--normal",
        ])
        .expect("parses");
        assert_eq!(o.initrd, Some(PathBuf::from("c.cpio")));
        assert_eq!((o.smp, o.mem, o.normal), (2, 1 << 30, true));
        assert_eq!(o.cmdline, "quiet");
        assert_eq!(
            parse(&["--kernel", "I", "--mem", "65536K"]).map(|o| o.mem),
            Ok(64 << 20)
        );
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert_eq!(parse(&[]), Err(ArgsError::NoKernel));
        assert_eq!(
            parse(&["--kernel"]),
            Err(ArgsError::MissingValue("--kernel"))
        );
        assert_eq!(
            parse(&["--kernel", "I", "--frob"]),
            Err(ArgsError::Unknown("--frob".to_string()))
        );
        for smp in ["0", "x", "1000"] {
            assert!(matches!(
                parse(&["--kernel", "I", "--smp", smp]),
                Err(ArgsError::Bad("--smp", _))
            ));
        }
        // Not whole pages, too small, overflowing, not a number.
        for mem in ["100000001", "1M", "99999999999G", "G", "", "1T"] {
            assert!(
                matches!(
                    parse(&["--kernel", "I", "--mem", mem]),
                    Err(ArgsError::Bad("--mem", _))
                ),
                "{mem}"
            );
        }
        assert_eq!(parse(&["--help"]), Err(ArgsError::Help));
        assert!(matches!(
            parse(&["--kernel", "I", "--normal", "--attest"]),
            Err(ArgsError::Bad("--attest", _))
        ));
        assert_eq!(
            parse(&["--kernel", "I", "--attest"]).map(|o| o.attest),
            Ok(true)
        );
    }
}
