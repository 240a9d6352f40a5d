//! System memory as the kernel reports it: `MemAvailable` of `/proc/meminfo`, what eviction
//! cases check their budget against and what the eviction observer samples, and TTM's page
//! pool in debugfs.
//!
//! `MemAvailable` (fs/proc/meminfo.c, `si_mem_available()`) is the kernel's estimate of what a
//! new workload can take without swapping, printed as `MemAvailable:   %8lu kB` (kibibytes).
//! TTM's global pool (drivers/gpu/drm/ttm/ttm_pool.c, debugfs `ttm/page_pool`) ends with
//! `total\t: %8lu of %8lu`: pages held in the pool, of the pool's limit.

use std::path::{Path, PathBuf};

/// Where the kernel reports memory.
pub const PROC_MEMINFO: &str = "/proc/meminfo";
/// TTM's global page pool, under the debugfs root.
pub const TTM_PAGE_POOL: &str = "ttm/page_pool";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeminfoError {
    #[error("reading `{path}`: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("`{path}` has no `{field}` line; expected `{field}: <number> kB`")]
    Missing { path: PathBuf, field: &'static str },
    #[error("`{path}`: `{line}` is not `{field}: <number> kB`")]
    Malformed {
        path: PathBuf,
        field: &'static str,
        line: String,
    },
}

/// Bytes of `field` (a `kB` line) in meminfo `text` read from `path`.
pub fn parse_field(text: &str, field: &'static str, path: &Path) -> Result<u64, MeminfoError> {
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(field))
        .ok_or_else(|| MeminfoError::Missing {
            path: path.to_path_buf(),
            field,
        })?;
    let malformed = || MeminfoError::Malformed {
        path: path.to_path_buf(),
        field,
        line: line.escape_debug().to_string(),
    };
    // The field's name alone, with no colon after it, is a line of the field without a value.
    let rest = line[field.len()..]
        .strip_prefix(':')
        .ok_or_else(malformed)?
        .trim();
    let number = rest.strip_suffix("kB").ok_or_else(malformed)?.trim();
    let kib: u64 = number.parse().map_err(|_| malformed())?;
    kib.checked_mul(1024).ok_or_else(malformed)
}

/// `MemAvailable` of `path` (normally [`PROC_MEMINFO`]), in bytes.
pub fn mem_available(path: &Path) -> Result<u64, MeminfoError> {
    let text = std::fs::read_to_string(path).map_err(|e| MeminfoError::Read {
        path: path.to_path_buf(),
        reason: crate::util::text::io_reason(&e),
    })?;
    parse_field(&text, "MemAvailable", path)
}

/// Pages in TTM's pool and the pool's limit, from the `total` line of `ttm/page_pool` or of a
/// device's `ttm_page_pool`; `None` when the text has no such line (a pool printed `unused`).
pub fn parse_ttm_pool_total(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("total"))?;
    let (_, counts) = line.split_once(':')?;
    let mut words = counts.split_whitespace();
    let pages = words.next()?.parse().ok()?;
    (words.next()? == "of").then_some(())?;
    let limit = words.next()?.parse().ok()?;
    words.next().is_none().then_some((pages, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24576000 kB\n\
                           MemFree:         1234567 kB\n\
                           MemAvailable:   20000000 kB\n\
                           Buffers:          123456 kB\n\
                           HugePages_Total:       0\n";

    #[test]
    fn mem_available_is_read_in_bytes() {
        let p = Path::new("/proc/meminfo");
        assert_eq!(
            parse_field(MEMINFO, "MemAvailable", p),
            Ok(20_000_000 * 1024)
        );
        assert_eq!(parse_field(MEMINFO, "MemTotal", p), Ok(24_576_000 * 1024));
    }

    #[test]
    fn a_missing_or_malformed_line_is_named() {
        let p = Path::new("m");
        assert_eq!(
            parse_field("MemTotal: 1 kB\n", "MemAvailable", p)
                .unwrap_err()
                .to_string(),
            "`m` has no `MemAvailable` line; expected `MemAvailable: <number> kB`"
        );
        for bad in [
            "MemAvailable: 12\n",
            "MemAvailable: x kB\n",
            "MemAvailable: 99999999999999999999 kB\n",
            // The name alone: the fuzzer's first find, once a slice past the line's end.
            "MemAvailable\n",
            "MemAvailable",
        ] {
            let e = parse_field(bad, "MemAvailable", p).unwrap_err();
            assert!(matches!(e, MeminfoError::Malformed { .. }), "{bad}: {e}");
        }
        let e = mem_available(Path::new("/nonexistent/meminfo")).unwrap_err();
        assert!(e.to_string().starts_with("reading `/nonexistent/meminfo`"));
    }

    #[test]
    fn the_ttm_pool_total_is_its_footer() {
        // ttm_pool_debugfs_globals_show(): header, four pool rows, then the footer.
        let text = "\t  --- 0--- --- 1--- --- 2---\n\
                    wc\t:        4        0        0\n\
                    uc\t:        0        0        0\n\
                    wc 32\t:        0        0        0\n\
                    uc 32\t:        0        0        0\n\
                    \n\
                    total\t:     1536 of  3072000\n";
        assert_eq!(parse_ttm_pool_total(text), Some((1536, 3_072_000)));
        assert_eq!(parse_ttm_pool_total("unused\n"), None);
        assert_eq!(parse_ttm_pool_total("total\t: 12 of\n"), None);
        assert_eq!(parse_ttm_pool_total("total\t: 12 of 3 4\n"), None);
    }
}
