// SPDX-License-Identifier: GPL-2.0

//! `realm-vmm`: boots Linux in an Arm CCA realm (or, with `--normal`, a
//! normal VM). See [`realm_vmm::args::USAGE`].

use std::process::ExitCode;

use realm_vmm::args::{
    ArgsError,
    Options, //
};

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(ArgsError::Help) => {
            println!("{}", realm_vmm::args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("realm-vmm: {e}");
            return ExitCode::from(2);
        }
    };
    run(&opts)
}

#[cfg(target_arch = "aarch64")]
fn run(opts: &Options) -> ExitCode {
    match realm_vmm::vmm::run(opts) {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(1)),
        Err(e) => {
            eprintln!("realm-vmm: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(target_arch = "aarch64"))]
fn run(_opts: &Options) -> ExitCode {
    eprintln!("realm-vmm: runs on aarch64 hosts with KVM");
    ExitCode::from(1)
}
