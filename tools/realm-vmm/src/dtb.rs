// SPDX-License-Identifier: GPL-2.0

//! The guest's device tree: memory, CPUs, PSCI, GICv3, the arch timer, the
//! UART and `chosen`, written with `vm-fdt`.
//!
//! A realm guest asks for PSCI through SMC: Linux looks for the RMM (RSI)
//! only when its SMCCC conduit is SMC (`arm64_rsi_init()`), and the RMM
//! answers PSCI itself, handing the host what it must do. A normal VM uses
//! HVC, as KVM expects.

use vm_fdt::{
    Error as FdtError,
    FdtWriter, //
};

use crate::layout::{
    Region,
    GICD_BASE,
    GICD_SIZE,
    GICR_BASE,
    GICR_STRIDE,
    MAX_VCPUS,
    RAM_BASE,
    UART_BASE,
    UART_SIZE,
    UART_SPI, //
};

/// The phandle of the GIC, every device's interrupt parent.
const GIC_PHANDLE: u32 = 1;

/// `GIC_PPI` and `GIC_SPI` in an interrupt specifier.
const GIC_SPI: u32 = 0;
/// See [`GIC_SPI`].
const GIC_PPI: u32 = 1;

/// `IRQ_TYPE_EDGE_RISING`: vm-superio's UART pulses its line.
const IRQ_TYPE_EDGE_RISING: u32 = 1;
/// `IRQ_TYPE_LEVEL_HIGH`.
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// The 16550's input clock, as on a PC.
const UART_CLOCK_HZ: u32 = 1_843_200;

/// What the device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtbConfig {
    /// The number of vCPUs, each with MPIDR affinity from its index.
    pub vcpus: u32,
    /// Guest RAM's size, from [`RAM_BASE`].
    pub ram_size: u64,
    /// The kernel command line.
    pub cmdline: String,
    /// The initrd, if any.
    pub initrd: Option<Region>,
    /// Whether the guest is a realm (PSCI through SMC) or a normal VM (HVC).
    pub realm: bool,
}

/// Why a device tree cannot be made.
#[derive(Debug)]
pub enum DtbError {
    /// No vCPU, or more than the redistributor region holds.
    Vcpus(u32),
    /// vm-fdt refused (a string with a NUL, a blob too large).
    Fdt(FdtError),
}

impl std::fmt::Display for DtbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vcpus(n) => write!(f, "{n} vCPUs: must be 1 to {MAX_VCPUS}"),
            Self::Fdt(e) => write!(f, "device tree: {e}"),
        }
    }
}

impl std::error::Error for DtbError {}

impl From<FdtError> for DtbError {
    fn from(e: FdtError) -> Self {
        Self::Fdt(e)
    }
}

/// The MPIDR affinity of vCPU `index`, as KVM and the RMM give it: Aff0 the
/// low 4 bits, Aff1 the next 8 (16 CPUs per cluster, as GICv3's target
/// lists want).
pub fn vcpu_mpidr(index: u32) -> u32 {
    (index & 0xf) | ((index >> 4) & 0xff) << 8
}

/// The device tree blob for `cfg`.
pub fn build(cfg: &DtbConfig) -> Result<Vec<u8>, DtbError> {
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(DtbError::Vcpus(cfg.vcpus));
    }
    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string("compatible", "linux,dummy-virt")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    for i in 0..cfg.vcpus {
        let mpidr = vcpu_mpidr(i);
        let cpu = w.begin_node(&format!("cpu@{mpidr:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", "arm,arm-v8")?;
        w.property_string("enable-method", "psci")?;
        w.property_u32("reg", mpidr)?;
        w.end_node(cpu)?;
    }
    w.end_node(cpus)?;

    let memory = w.begin_node(&format!("memory@{RAM_BASE:x}"))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64("reg", &[RAM_BASE, cfg.ram_size])?;
    w.end_node(memory)?;

    let gic = w.begin_node(&format!("intc@{GICD_BASE:x}"))?;
    w.property_string("compatible", "arm,gic-v3")?;
    w.property_null("interrupt-controller")?;
    w.property_u32("#interrupt-cells", 3)?;
    let redist = u64::from(cfg.vcpus) * GICR_STRIDE;
    w.property_array_u64("reg", &[GICD_BASE, GICD_SIZE, GICR_BASE, redist])?;
    w.property_phandle(GIC_PHANDLE)?;
    // The maintenance interrupt, PPI 9.
    w.property_array_u32("interrupts", &[GIC_PPI, 9, IRQ_TYPE_LEVEL_HIGH])?;
    w.end_node(gic)?;

    let timer = w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    w.property_null("always-on")?;
    // Secure and non-secure physical, virtual, hypervisor: PPIs 13, 14, 11, 10.
    let ppis: Vec<u32> = [13, 14, 11, 10]
        .iter()
        .flat_map(|&ppi| [GIC_PPI, ppi, IRQ_TYPE_LEVEL_HIGH])
        .collect();
    w.property_array_u32("interrupts", &ppis)?;
    w.end_node(timer)?;

    let psci = w.begin_node("psci")?;
    w.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".to_string(), "arm,psci-0.2".to_string()],
    )?;
    w.property_string("method", if cfg.realm { "smc" } else { "hvc" })?;
    w.end_node(psci)?;

    let uart_name = format!("serial@{UART_BASE:x}");
    let uart = w.begin_node(&uart_name)?;
    w.property_string("compatible", "ns16550a")?;
    w.property_array_u64("reg", &[UART_BASE, UART_SIZE])?;
    w.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    w.property_array_u32("interrupts", &[GIC_SPI, UART_SPI, IRQ_TYPE_EDGE_RISING])?;
    w.end_node(uart)?;

    let chosen = w.begin_node("chosen")?;
    w.property_string("bootargs", &cfg.cmdline)?;
    w.property_string("stdout-path", &format!("/{uart_name}"))?;
    if let Some(initrd) = cfg.initrd {
        w.property_u64("linux,initrd-start", initrd.base)?;
        w.property_u64("linux,initrd-end", initrd.end())?;
    }
    w.end_node(chosen)?;

    w.end_node(root)?;
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vcpus: u32, realm: bool) -> DtbConfig {
        DtbConfig {
            vcpus,
            ram_size: 512 << 20,
            cmdline: "console=ttyS0".to_string(),
            initrd: Some(Region {
                base: RAM_BASE + (500 << 20),
                size: 8192,
            }),
            realm,
        }
    }

    /// The big-endian cells of property `name` of `node`.
    fn cells(node: &fdt::node::FdtNode<'_, '_>, name: &str) -> Vec<u32> {
        let prop = node.property(name).expect(name);
        prop.value
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("cell")))
            .collect()
    }

    #[test]
    fn a_realm_tree_has_what_linux_needs() {
        let blob = build(&cfg(2, true)).expect("builds");
        let dt = fdt::Fdt::new(&blob).expect("parses");
        let psci = dt.find_node("/psci").expect("psci");
        assert_eq!(
            psci.property("method").and_then(|p| p.as_str()),
            Some("smc")
        );
        assert!(psci
            .compatible()
            .expect("compatible")
            .all()
            .any(|c| c == "arm,psci-0.2"));

        let cpus: Vec<_> = dt.cpus().collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[1].ids().first(), 1);
        for cpu in &cpus {
            assert_eq!(
                cpu.property("enable-method").and_then(|p| p.as_str()),
                Some("psci")
            );
        }

        let mem = dt.memory().regions().collect::<Vec<_>>();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].starting_address as u64, RAM_BASE);
        assert_eq!(mem[0].size, Some(512 << 20));

        let gic = dt.find_node("/intc@8000000").expect("gic");
        assert_eq!(
            cells(&gic, "reg"),
            [0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 2 * 0x2_0000]
        );
        assert!(gic.property("interrupt-controller").is_some());
        assert_eq!(cells(&gic, "#interrupt-cells"), [3]);

        let timer = dt.find_node("/timer").expect("timer");
        assert_eq!(
            cells(&timer, "interrupts"),
            [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );

        let uart = dt.find_node("/serial@9000000").expect("uart");
        assert_eq!(uart.compatible().map(|c| c.first()), Some("ns16550a"));
        assert_eq!(cells(&uart, "interrupts"), [0, 1, 1]);
        assert_eq!(cells(&uart, "clock-frequency"), [1_843_200]);

        let chosen = dt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyS0"));
        let node = dt.find_node("/chosen").expect("chosen");
        let start = RAM_BASE + (500 << 20);
        assert_eq!(
            cells(&node, "linux,initrd-start"),
            [(start >> 32) as u32, start as u32]
        );
        let end = start + 8192;
        assert_eq!(
            cells(&node, "linux,initrd-end"),
            [(end >> 32) as u32, end as u32]
        );
        assert_eq!(
            node.property("stdout-path").and_then(|p| p.as_str()),
            Some("/serial@9000000")
        );
    }

    #[test]
    fn a_normal_vm_uses_hvc_and_cpus_are_numbered_by_affinity() {
        let blob = build(&cfg(18, false)).expect("builds");
        let dt = fdt::Fdt::new(&blob).expect("parses");
        let psci = dt.find_node("/psci").expect("psci");
        assert_eq!(
            psci.property("method").and_then(|p| p.as_str()),
            Some("hvc")
        );
        let ids: Vec<_> = dt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(ids.len(), 18);
        // Sixteen in cluster 0, then Aff1 = 1.
        assert_eq!(ids[15], 0xf);
        assert_eq!(ids[16], 0x100);
        assert_eq!(ids[17], 0x101);
        assert!(dt.find_node("/cpus/cpu@101").is_some());
    }

    #[test]
    fn vcpu_counts_and_strings_are_checked() {
        assert!(matches!(build(&cfg(0, true)), Err(DtbError::Vcpus(0))));
        assert!(matches!(
            build(&cfg(MAX_VCPUS + 1, true)),
            Err(DtbError::Vcpus(_))
        ));
        assert!(build(&cfg(MAX_VCPUS, true)).is_ok());
        let mut bad = cfg(1, true);
        bad.cmdline = "a\0b".to_string();
        assert!(matches!(build(&bad), Err(DtbError::Fdt(_))));
        // No initrd: no initrd properties.
        let mut none = cfg(1, true);
        none.initrd = None;
        let blob = build(&none).expect("builds");
        let dt = fdt::Fdt::new(&blob).expect("parses");
        let chosen = dt.find_node("/chosen").expect("chosen");
        assert!(chosen.property("linux,initrd-start").is_none());
    }
}
