// SPDX-License-Identifier: GPL-2.0

//! The module's debugfs directory, `kvm_rmi/`: what the RMM offers, the RMI
//! calls made, granules delegated and leaked, `REC_ENTER` time, the fault
//! injection knob, and one directory per realm under `realms/`.

use kernel::{
    c_str,
    debugfs::{
        Dir,
        File,
        Scope, //
    },
    fmt,
    global_lock,
    prelude::*,
    str::CString,
    sync::Arc,
    uaccess::UserSliceReader, //
};

use crate::realm_stats::RealmStats;
use crate::rmi_cmds::{
    RmiFeatureRegs,
    RmiVersionRange, //
};
use crate::rmi_observe::InjectSpec;
use crate::rmi_smc::RmiVersion;
use crate::{
    Shown,
    REC_ENTER_TIME,
    RMI,
    RMI_CALL_TIME,
    RMI_OBSERVER, //
};

/// What `kvm_rmi/rmm` shows: found at load, fixed for the boot.
struct RmmFacts {
    versions: RmiVersionRange,
    features: RmiFeatureRegs,
}

/// The global files; they go before the directory.
pub(crate) struct Debugfs {
    _rmm: Pin<KBox<File<RmmFacts>>>,
    _rmi_calls: Pin<KBox<File<()>>>,
    _delegated: Pin<KBox<File<()>>>,
    _leaked: Pin<KBox<File<()>>>,
    _rec_enter: Pin<KBox<File<()>>>,
    _rmi_time: Pin<KBox<File<()>>>,
    _inject: Pin<KBox<File<()>>>,
    /// `kvm_rmi/`, removed after its files.
    _dir: Dir,
}

global_lock! {
    // SAFETY: Initialised by `Debugfs::new` before any other use.
    unsafe(uninit) static REALMS_DIR: Mutex<Option<Dir>> = None;
}

/// The longest request `inject` takes.
const INJECT_MAX: usize = 128;

/// Reads an injection request from userspace and applies it.
fn write_inject(_: &(), reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; INJECT_MAX];
    let len = reader.len();
    let text = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(text)?;
    let text = core::str::from_utf8(text).map_err(|_| EINVAL)?;
    match InjectSpec::parse(text) {
        Ok(Some(spec)) => {
            pr_info!("injecting RMI failures: {}\n", Shown(spec));
            RMI_OBSERVER.inject.arm(&spec);
            Ok(())
        }
        Ok(None) => {
            RMI_OBSERVER.inject.disarm();
            Ok(())
        }
        Err(e) => {
            pr_warn!("inject: {}\n", Shown(e));
            Err(EINVAL)
        }
    }
}

/// A read-only file of `dir` showing `write(f)`.
fn global_file(
    dir: &Dir,
    name: &'static CStr,
    show: &'static (impl Fn(&(), &mut fmt::Formatter<'_>) -> fmt::Result + Send + Sync),
) -> Result<Pin<KBox<File<()>>>> {
    KBox::pin_init(dir.read_callback_file(name, (), show), GFP_KERNEL)
}

impl Debugfs {
    /// Creates `kvm_rmi/` and its files, and `realms/` for
    /// [`realm_scope`]. Without debugfs this creates nothing and succeeds.
    pub(crate) fn new(versions: RmiVersionRange, features: RmiFeatureRegs) -> Result<Self> {
        let dir = Dir::new(c_str!("kvm_rmi"));
        let rmm = KBox::pin_init(
            dir.read_callback_file(
                c_str!("rmm"),
                RmmFacts { versions, features },
                &|facts: &RmmFacts, f| {
                    writeln!(f, "abi {}", RmiVersion::HOST)?;
                    writeln!(f, "rmm {}..{}", facts.versions.lower, facts.versions.higher)?;
                    writeln!(f, "features {}", facts.features)
                },
            ),
            GFP_KERNEL,
        )?;
        let rmi_calls = global_file(&dir, c_str!("rmi_calls"), &|(): &(), f| {
            RMI_OBSERVER.calls.write_to(f)
        })?;
        let delegated = global_file(&dir, c_str!("delegated"), &|(): &(), f| {
            writeln!(f, "{}", RMI_OBSERVER.delegated())
        })?;
        let leaked = global_file(&dir, c_str!("leaked"), &|(): &(), f| {
            writeln!(f, "{}", RMI.leaked())
        })?;
        let rec_enter = global_file(&dir, c_str!("rec_enter"), &|(): &(), f| {
            REC_ENTER_TIME.write_to(f)
        })?;
        let rmi_time = global_file(&dir, c_str!("rmi_time"), &|(): &(), f| {
            RMI_CALL_TIME.write_to(f)
        })?;
        let inject = KBox::pin_init(
            dir.read_write_callback_file(
                c_str!("inject"),
                (),
                &|(): &(), f| RMI_OBSERVER.inject.write_to(f),
                &write_inject,
            ),
            GFP_KERNEL,
        )?;
        // Once per load, here, before `realm_scope` can run: no realm
        // exists before the module registers with KVM.
        // SAFETY: As above.
        unsafe { REALMS_DIR.init() };
        *REALMS_DIR.lock() = Some(dir.subdir(c_str!("realms")));
        Ok(Self {
            _rmm: rmm,
            _rmi_calls: rmi_calls,
            _delegated: delegated,
            _leaked: leaked,
            _rec_enter: rec_enter,
            _rmi_time: rmi_time,
            _inject: inject,
            _dir: dir,
        })
    }
}

impl Drop for Debugfs {
    fn drop(&mut self) {
        // No realm is left (each holds a module reference).
        let realms = REALMS_DIR.lock().take();
        drop(realms);
    }
}

/// What a realm's debugfs files read; shared with the realm.
pub(crate) struct RealmView {
    /// The realm's report number.
    pub(crate) id: u64,
    /// The process that created it.
    pub(crate) pid: i32,
    /// Its IPA size.
    pub(crate) ipa_bits: u8,
    /// Its counters, which the realm's state and RTT count are published
    /// to (`kvm_realm::LockedRealm`).
    pub(crate) stats: Arc<RealmStats>,
}

/// Writes `realms/<id>/info`.
fn show_realm_info(v: &RealmView, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "id {}", v.id)?;
    writeln!(f, "pid {}", v.pid)?;
    v.stats.write_info(f, v.ipa_bits)
}

/// Writes `realms/<id>/exits`.
fn show_realm_exits(v: &RealmView, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    v.stats.write_exits(f)
}

/// Creates `realms/<id>/` with `info` and `exits` for `view`; removed when
/// the returned scope is dropped, which waits for readers.
pub(crate) fn realm_scope(view: RealmView) -> Result<Pin<KBox<Scope<RealmView>>>> {
    let name = CString::try_from_fmt(fmt!("{}", view.id))?;
    let realms = REALMS_DIR.lock();
    let dir = realms.as_ref().ok_or(ENODEV)?;
    let scope = dir.scope(view, &name, |view, d| {
        d.read_callback_file(c_str!("info"), view, &show_realm_info);
        d.read_callback_file(c_str!("exits"), view, &show_realm_exits);
    });
    KBox::pin_init(scope, GFP_KERNEL)
}
