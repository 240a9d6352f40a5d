//! PCI addresses, `domain:bus:device.function`, as the kernel writes them (sysfs, uevents, the
//! kernel log) and as a person types them (`--device`, a lab host file): one parser for both.

use std::fmt;
use std::str::FromStr;

/// A PCI address, `domain:bus:device.function`, as sysfs and `hipDeviceGetPCIBusId` write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// `devfn` as the kernel packs it: device << 3 | function.
    pub fn devfn(self) -> u8 {
        self.device << 3 | self.function
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Written as text, `0000:c1:00.0`, in run.json and the journal.
impl serde::Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a PCI address; expected `DOMAIN:BUS:DEVICE.FUNCTION` in hex, like `0000:c1:00.0` (the domain may be left out)")]
pub struct BadPciAddress {
    pub text: String,
}

impl PciAddress {
    /// What a person types for `--device`: `0000:c1:00.0`, `c1:00.0` (domain 0) or `0000:c1:00`
    /// (function 0), any case; the domain in at most 4 hex digits, as lspci prints it.
    pub fn parse_typed(s: &str) -> Option<PciAddress> {
        parse(s, true, 4)
    }
}

impl FromStr for PciAddress {
    type Err = BadPciAddress;

    /// As the kernel writes it: `0000:c1:00.0` or `c1:00.0`, any case, the function always
    /// there; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<PciAddress, BadPciAddress> {
        parse(s, false, 8).ok_or_else(|| BadPciAddress {
            text: s.to_string(),
        })
    }
}

/// The one parser: the function may be left out (as 0) where `function_optional`, and the
/// domain has at most `domain_digits` hex digits.
fn parse(s: &str, function_optional: bool, domain_digits: usize) -> Option<PciAddress> {
    let t = s.trim();
    let (head, function) = match t.rsplit_once('.') {
        Some((head, f)) => (head, Some(f)),
        None if function_optional => (t, None),
        None => return None,
    };
    let parts: Vec<&str> = head.split(':').collect();
    let (domain, bus, device) = match parts[..] {
        [d, b, dev] => (d, b, dev),
        [b, dev] => ("0", b, dev),
        _ => return None,
    };
    let hex = |text: &str, max_digits: usize| -> Option<u32> {
        if text.is_empty()
            || text.len() > max_digits
            || !text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    };
    let device = hex(device, 2)?;
    let function = match function {
        Some(f) => hex(f, 1)?,
        None => 0,
    };
    if device > 0x1f || function > 7 {
        return None;
    }
    Some(PciAddress {
        domain: hex(domain, domain_digits)?,
        bus: hex(bus, 2)? as u8,
        device: device as u8,
        function: function as u8,
    })
}
