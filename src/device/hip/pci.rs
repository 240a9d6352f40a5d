//! Which GPU a run uses: `--device` as a HIP device index or a PCI bus id, and PCI bus ids
//! written the way hipDeviceGetPCIBusId, lspci and sysfs write them.
//!
//! HIP (clr, hip_device_runtime.cpp) prints `%04x:%02x:%02x.0` from the device's PCI domain,
//! bus and device: lower case, function always 0. sysfs (`/sys/bus/pci/devices/`) uses the
//! same form, so the id doubles as the key the kernel-side observers look the GPU up by.

use std::fmt;

/// A PCI address: domain, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciBusId {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciBusId {
    /// Parses `0000:c1:00.0`, `c1:00.0` (domain 0), `0000:C1:00` (function 0), any case.
    pub fn parse(s: &str) -> Option<PciBusId> {
        let s = s.trim();
        let (rest, function) = match s.rsplit_once('.') {
            Some((rest, f)) => (rest, u8::from_str_radix(f, 16).ok().filter(|f| *f < 8)?),
            None => (s, 0),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (*d, *b, *v),
            [b, v] => ("0", *b, *v),
            _ => return None,
        };
        let hex = |t: &str, max_len: usize| {
            (!t.is_empty() && t.len() <= max_len && t.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(t, 16).ok())
                .flatten()
        };
        let device = hex(device, 2).filter(|d| *d < 32)?;
        Some(PciBusId {
            domain: hex(domain, 4)? as u16,
            bus: hex(bus, 2)? as u8,
            device: device as u8,
            function,
        })
    }
}

impl fmt::Display for PciBusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// `--device`: which GPU of the machine the run uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The first device HIP lists (HIP device 0).
    #[default]
    First,
    /// HIP's device index, as HIP_VISIBLE_DEVICES leaves them.
    Index(u32),
    /// The device at this PCI address, whatever its index.
    Pci(PciBusId),
}

impl DeviceSelector {
    /// `3` is an index, anything with a `:` a PCI bus id; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeviceSelector> {
        let s = s.trim();
        if s.contains(':') {
            return PciBusId::parse(s).map(DeviceSelector::Pci);
        }
        s.parse().ok().map(DeviceSelector::Index)
    }

    /// Picks from `devices` (index, PCI bus id as HIP prints it) the one this selector names.
    pub fn pick(&self, devices: &[(u32, String)]) -> Option<u32> {
        match self {
            DeviceSelector::First => devices.first().map(|(i, _)| *i),
            DeviceSelector::Index(want) => devices.iter().find(|(i, _)| i == want).map(|d| d.0),
            DeviceSelector::Pci(want) => devices
                .iter()
                .find(|(_, id)| PciBusId::parse(id).is_some_and(|p| p == *want))
                .map(|(i, _)| *i),
        }
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::First => f.write_str("the first device"),
            DeviceSelector::Index(i) => write!(f, "HIP device {i}"),
            DeviceSelector::Pci(p) => write!(f, "the device at PCI {p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("0000:c1:00.0", 0, 0xc1, 0, 0)]
    #[case("0001:C1:1f.7", 1, 0xc1, 0x1f, 7)]
    #[case("c1:00.0", 0, 0xc1, 0, 0)]
    #[case("0000:03:00", 0, 3, 0, 0)]
    fn parses_the_forms_people_paste(
        #[case] s: &str,
        #[case] domain: u16,
        #[case] bus: u8,
        #[case] device: u8,
        #[case] function: u8,
    ) {
        assert_eq!(
            PciBusId::parse(s),
            Some(PciBusId {
                domain,
                bus,
                device,
                function
            })
        );
    }

    #[rstest]
    #[case("")]
    #[case("c1")]
    #[case("0000:c1:20.0")] // device is 5 bits
    #[case("0000:c1:00.8")] // function is 3 bits
    #[case("00000:c1:00.0")]
    #[case("0000:1c1:00.0")]
    #[case("0000:g1:00.0")]
    #[case("a:b:c:d")]
    fn rejects_what_is_not_a_pci_address(#[case] s: &str) {
        assert_eq!(PciBusId::parse(s), None);
    }

    #[test]
    fn formats_as_hip_and_sysfs_do() {
        let p = PciBusId::parse("0000:C1:00.0").unwrap();
        assert_eq!(p.to_string(), "0000:c1:00.0");
        let odd = PciBusId {
            domain: 0x1a,
            bus: 3,
            device: 0x1f,
            function: 2,
        };
        assert_eq!(odd.to_string(), "001a:03:1f.2");
        assert_eq!(PciBusId::parse(&odd.to_string()), Some(odd));
    }

    #[test]
    fn selectors_pick_by_index_or_address() {
        let devices = vec![
            (0, "0000:03:00.0".to_string()),
            (1, "0000:c1:00.0".to_string()),
        ];
        assert_eq!(DeviceSelector::First.pick(&devices), Some(0));
        assert_eq!(DeviceSelector::parse("1").unwrap().pick(&devices), Some(1));
        assert_eq!(DeviceSelector::parse("2").unwrap().pick(&devices), None);
        assert_eq!(
            DeviceSelector::parse("C1:00.0").unwrap().pick(&devices),
            Some(1)
        );
        assert_eq!(
            DeviceSelector::parse("0000:04:00.0")
                .unwrap()
                .pick(&devices),
            None
        );
        assert_eq!(DeviceSelector::First.pick(&[]), None);
        assert_eq!(DeviceSelector::parse("gpu0"), None);
        assert_eq!(DeviceSelector::parse("0000:zz:00.0"), None);
    }
}
