//! Which GPU a run uses: `--device` as a HIP device index or a PCI bus id, and PCI bus ids
//! written the way hipDeviceGetPCIBusId, lspci and sysfs write them.
//!
//! HIP (clr, hip_device_runtime.cpp) prints `%04x:%02x:%02x.0` from the device's PCI domain,
//! bus and device: lower case, function always 0. sysfs (`/sys/bus/pci/devices/`) uses the
//! same form, so the id doubles as the key the kernel-side observers look the GPU up by.

use std::fmt;

use crate::util::pci::PciAddress;

/// `--device`: which GPU of the machine the run uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The first device HIP lists (HIP device 0).
    #[default]
    First,
    /// HIP's device index, as HIP_VISIBLE_DEVICES leaves them.
    Index(u32),
    /// The device at this PCI address, whatever its index.
    Pci(PciAddress),
}

impl DeviceSelector {
    /// `3` is an index, anything with a `:` a PCI bus id; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeviceSelector> {
        let s = s.trim();
        if s.contains(':') {
            return PciAddress::parse_typed(s).map(DeviceSelector::Pci);
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
                .find(|(_, id)| PciAddress::parse_typed(id).is_some_and(|p| p == *want))
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
        #[case] domain: u32,
        #[case] bus: u8,
        #[case] device: u8,
        #[case] function: u8,
    ) {
        assert_eq!(
            PciAddress::parse_typed(s),
            Some(PciAddress {
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
        assert_eq!(PciAddress::parse_typed(s), None);
    }

    #[test]
    fn formats_as_hip_and_sysfs_do() {
        let p = PciAddress::parse_typed("0000:C1:00.0").unwrap();
        assert_eq!(p.to_string(), "0000:c1:00.0");
        let odd = PciAddress {
            domain: 0x1a,
            bus: 3,
            device: 0x1f,
            function: 2,
        };
        assert_eq!(odd.to_string(), "001a:03:1f.2");
        assert_eq!(PciAddress::parse_typed(&odd.to_string()), Some(odd));
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
