//! Fault plans for the reference device (`--sim-faults FILE`): rules that each break one thing
//! the series must get right, when and where the plan says, so that the suite can be shown to
//! catch each defect with the right diagnosis (the kill matrix, `svmconf kill-matrix`). Every
//! rule counts the occurrences it matched and fired on; the runner writes them into each case's
//! journal record (`injected`), the summary totals them per rule, and the kill matrix tells a
//! plan that never fired from one that escaped the suite.
//!
//! A plan (`fixtures/faults/*.yaml`):
//! ```yaml
//! description: a CPU fault back to RAM flips a bit in one word of the first page it copies
//! catches: [cpu_fault::read::managed::2MiB]   # cases that must catch it (names or regexes)
//! rules:
//!   - kind: corrupt          # what to break (the kinds below)
//!     direction: to_ram      # migrations to_vram or to_ram (default: both; see drop, phantom, stale)
//!     trigger: cpu_fault     # prefetch | gpu_fault | cpu_fault | eviction (default: any)
//!     nth: 1                 # only the nth occurrence this rule matches (default: every one)
//!     pages: first           # first | last | all | every N | page N (default: per kind, below)
//!     of: migration          # what `pages` and `offset` count in: migration | allocation
//!     helpers: false         # also the suite's own helper allocations (default: false)
//!     cold: false            # only an allocation's first migration to VRAM (default: false)
//!     probability: 1.0       # per occurrence, drawn from the run's seed (default 1)
//!     words: 1               # kind-specific: see below
//! ```
//! Kinds, and what an occurrence is for each:
//! - on a migration: `corrupt` (flip bit 8 of `words` words of each selected page, default 1),
//!   `wrong_page` (copy the page `offset` pages away, default 1, into each selected page),
//!   `phantom` (report the migration, move nothing: the pages stay where they were),
//!   `drop` (to VRAM: move nothing, report nothing; to RAM: the pages come back to system
//!   memory without a copy and without a report, so the system pages keep what they held
//!   before), `stale` (the selected pages are not copied into: to RAM the system page keeps
//!   what it held before, to VRAM the device page keeps what its frame held before, from an
//!   earlier allocation, case or process), `zero_on_eviction` (an eviction's selected pages
//!   come back zeroed), `evict_without_copy` (an eviction copies nothing back into the
//!   selected pages), `slow` (the migration costs `factor` times as much, default 2, at most
//!   1e6, or with `growth: quadratic` grows with what its operation already migrated:
//!   quadratic in size), `kernel_log` (the kernel logs `line`, a WARNING by default, into
//!   `--kmsg FILE`; `{pid}` in it is the logging process's id);
//! - `hang`: a GPU fault never completes (the launch's wait times out);
//! - `ignore_preferred`: a GPU fault on a page that prefers system memory migrates it;
//! - `ignore_prefetch`: a prefetch moves nothing, yet takes the time it would have;
//! - `vram_leak`: freeing an allocation leaves `bytes` (default 2 MiB) counted as VRAM in use;
//! - `reset_keeps_vram`: a GPU reset keeps VRAM contents; `reset_loses_system`: a GPU reset
//!   zeroes every page of system memory it should not touch.
//!
//! Direction: a trigger implies one (`gpu_fault` to VRAM, `cpu_fault` and `eviction` to RAM).
//! Without a direction or such a trigger a rule breaks both ways, except `drop` and `phantom`,
//! which break migrations to VRAM unless the rule says `direction: to_ram`, and `stale`, which
//! breaks migrations to RAM unless it says `direction: to_vram` (a trigger that implies a
//! direction counts as saying it). `zero_on_eviction` and `evict_without_copy` are evictions,
//! so to RAM only.
//!
//! Pages: `corrupt`, `wrong_page`, `stale`, `zero_on_eviction` and `evict_without_copy` break
//! the selected pages; `phantom`, `drop`, `slow` and `kernel_log` break the whole migration,
//! and `pages` chooses which migrations they match. A migration matches a rule only when it
//! holds a selected page (for `wrong_page`, one whose source is another page of the
//! allocation), so `nth` counts those. Default `pages`: `first` for `corrupt`, `wrong_page`
//! and `zero_on_eviction`, `all` for the others.
//!
//! `of: migration` (the default) counts `pages` and `offset` among the pages the migration
//! moves: `page N` is its (N+1)th page, and `offset` wraps around inside the migration. A
//! migration is at most one range, so at most the largest chunk of the profile (512 pages,
//! 2 MiB, where the profile is not known, as for `svmconf kill-matrix`): `page N` beyond it,
//! or an `offset` of that many pages or more, could never break anything and is an error.
//! `of: allocation` counts them among the allocation's pages, from its first: `first` and
//! `last` are the allocation's first and last page, `every N` the pages whose number is a
//! multiple of N, `page N` that page of the allocation wherever a migration moves it, and
//! `wrong_page` copies the page `offset` pages away in the allocation, from wherever its data
//! is now (VRAM or system memory); a selected page whose source lies outside the allocation
//! is left alone and does not count.
//!
//! Several rules that fire on one migration all apply, in plan order: `slow` factors multiply
//! (up to 1e6 together); `kernel_log` lines are each logged; on each page, `stale` and
//! `evict_without_copy` decide whether it is copied at all, then `wrong_page`, `corrupt` and
//! `zero_on_eviction` change it in plan order (a later `wrong_page` overwrites an earlier one;
//! each `corrupt` flips the words after those the previous one flipped, so two never cancel).
//! When `drop` and `phantom` both fire, the first of them in the plan applies; the page rules
//! that fired with them count as fired but find nothing moved.
//!
//! Helpers: the suite's own machinery allocates memory too (the 16-byte result buffer of a
//! GPU verify); `Device::mark_helper` names such allocations, and a rule matches nothing on
//! them (a migration, GPU fault, prefetch or free) unless it says `helpers: true`. The reset
//! kinds do not concern an allocation and do not take `helpers`.
//!
//! An unknown kind or field, a field the kind does not take, a value out of range or a page
//! selector that could never match is an error naming the file, line, column and field.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rng::Rng;
use crate::device::{Injected, Trigger};
use crate::util::yaml::{self, FieldPath, YamlError};

/// Pages of the largest migration where the profile is not known: one 2 MiB range.
pub const MIGRATION_PAGES: u64 = 512;

/// The largest `slow` factor, alone or several multiplied: a 2 MiB migration then takes
/// minutes, and a case's simulated time stays far below what a `Duration` holds.
pub const MAX_FACTOR: f64 = 1e6;

/// What a rule breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Corrupt,
    WrongPage,
    Phantom,
    Drop,
    Stale,
    ZeroOnEviction,
    EvictWithoutCopy,
    Slow,
    KernelLog,
    Hang,
    IgnorePreferred,
    IgnorePrefetch,
    VramLeak,
    ResetKeepsVram,
    ResetLosesSystem,
}

impl Kind {
    /// Whether its occurrences are migrations (and `direction`, `trigger`, `pages`, `of` apply).
    fn on_migration(self) -> bool {
        matches!(
            self,
            Kind::Corrupt
                | Kind::WrongPage
                | Kind::Phantom
                | Kind::Drop
                | Kind::Stale
                | Kind::ZeroOnEviction
                | Kind::EvictWithoutCopy
                | Kind::Slow
                | Kind::KernelLog
        )
    }

    /// Whether it breaks the pages it selects (the others break whole migrations).
    pub fn per_page(self) -> bool {
        matches!(
            self,
            Kind::Corrupt
                | Kind::WrongPage
                | Kind::Stale
                | Kind::ZeroOnEviction
                | Kind::EvictWithoutCopy
        )
    }

    /// Whether its occurrences concern one allocation (and `helpers` applies).
    fn on_allocation(self) -> bool {
        !matches!(self, Kind::ResetKeepsVram | Kind::ResetLosesSystem)
    }

    /// The kind-specific fields it takes.
    fn params(self) -> &'static [&'static str] {
        match self {
            Kind::Corrupt => &["words"],
            Kind::WrongPage => &["offset"],
            Kind::Slow => &["factor", "growth"],
            Kind::KernelLog => &["line"],
            Kind::VramLeak => &["bytes"],
            _ => &[],
        }
    }

    /// Its name as a plan spells it: `wrong_page`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Which way a migration goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToVram,
    ToRam,
}

impl Direction {
    /// As a plan writes it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToVram => "to_vram",
            Direction::ToRam => "to_ram",
        }
    }
}

/// How a `slow` rule's cost grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    /// `factor` times the cost.
    #[default]
    Linear,
    /// Each migration costs more the more its operation has already migrated (1 + migrated /
    /// 2 MiB times): the operation's time grows with the square of its size.
    Quadratic,
}

/// What `pages` and `offset` count in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Of {
    /// The pages the migration moves, from its first.
    #[default]
    Migration,
    /// The allocation's pages, from its first.
    Allocation,
}

/// Which pages a rule touches, of a migration or of an allocation (`of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    First,
    Last,
    All,
    /// Every Nth page, starting with the first.
    Every(u64),
    /// The page at this index, if there is one.
    Page(u64),
}

impl Pages {
    fn parse(text: &str) -> Option<Pages> {
        let mut words = text.split_whitespace();
        let p = match (words.next()?, words.next()) {
            ("first", None) => Pages::First,
            ("last", None) => Pages::Last,
            ("all", None) => Pages::All,
            ("every", Some(n)) => Pages::Every(n.parse().ok().filter(|&n| n > 0)?),
            ("page", Some(n)) => Pages::Page(n.parse().ok()?),
            _ => return None,
        };
        words.next().is_none().then_some(p)
    }

    /// Whether page `i` of `n` is selected.
    pub fn picks(self, i: u64, n: u64) -> bool {
        match self {
            Pages::First => i == 0,
            Pages::Last => i + 1 == n,
            Pages::All => true,
            Pages::Every(k) => i % k == 0,
            Pages::Page(k) => i == k,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanText {
    description: String,
    catches: Vec<String>,
    rules: Vec<RuleText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    kind: Kind,
    direction: Option<Direction>,
    trigger: Option<TriggerText>,
    nth: Option<u64>,
    pages: Option<String>,
    of: Option<Of>,
    helpers: Option<bool>,
    cold: Option<bool>,
    probability: Option<f64>,
    words: Option<u32>,
    offset: Option<i64>,
    factor: Option<f64>,
    growth: Option<Growth>,
    line: Option<String>,
    bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TriggerText {
    Prefetch,
    GpuFault,
    CpuFault,
    Eviction,
}

impl TriggerText {
    fn trigger(self) -> Trigger {
        match self {
            TriggerText::Prefetch => Trigger::Prefetch,
            TriggerText::GpuFault => Trigger::GpuFault,
            TriggerText::CpuFault => Trigger::CpuFault,
            TriggerText::Eviction => Trigger::Eviction,
        }
    }
}

/// One rule, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub kind: Kind,
    pub direction: Option<Direction>,
    pub trigger: Option<Trigger>,
    pub nth: Option<u64>,
    pub pages: Pages,
    pub of: Of,
    /// It also matches the suite's helper allocations.
    pub helpers: bool,
    /// It matches only an allocation's first migration to VRAM: the cold path (a new range, a
    /// new device allocation, new GPU page tables).
    pub cold: bool,
    pub probability: f64,
    pub words: u32,
    pub offset: i64,
    pub factor: f64,
    pub growth: Growth,
    pub line: String,
    pub bytes: u64,
}

/// One migration as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Migration<'a> {
    pub direction: Direction,
    pub trigger: Trigger,
    /// The allocation's pages it moves, ascending.
    pub pages: &'a [u64],
    /// How many pages the allocation has.
    pub alloc_pages: u64,
    /// The allocation is the suite's own machinery (`Device::mark_helper`).
    pub helper: bool,
    /// The allocation's first migration to VRAM (`cold` rules).
    pub first: bool,
}

impl Rule {
    /// Whether it selects page `i` of migration `m`.
    pub fn picks(&self, i: usize, m: &Migration) -> bool {
        match self.of {
            Of::Migration => self.pages.picks(i as u64, m.pages.len() as u64),
            Of::Allocation => self.pages.picks(m.pages[i], m.alloc_pages),
        }
    }

    /// The allocation page a `wrong_page` rule copies into page `i` of `m`: `None` where that
    /// is the page itself or lies outside the allocation.
    pub fn source(&self, i: usize, m: &Migration) -> Option<u64> {
        let page = m.pages[i];
        let source = match self.of {
            Of::Migration => {
                let n = m.pages.len() as i64;
                m.pages[(i as i64 + self.offset).rem_euclid(n) as usize]
            }
            Of::Allocation => {
                let s = page as i64 + self.offset;
                if s < 0 || s >= m.alloc_pages as i64 {
                    return None;
                }
                s as u64
            }
        };
        (source != page).then_some(source)
    }

    /// Whether it breaks page `i` of `m`: selected, and for `wrong_page` with a source.
    pub fn breaks(&self, i: usize, m: &Migration) -> bool {
        self.picks(i, m) && (self.kind != Kind::WrongPage || self.source(i, m).is_some())
    }

    /// Whether migration `m` is one of its occurrences.
    fn matches(&self, m: &Migration) -> bool {
        self.direction.map_or(true, |d| d == m.direction)
            && self.trigger.map_or(true, |t| t == m.trigger)
            && (self.helpers || !m.helper)
            && (!self.cold || m.first)
            && (0..m.pages.len()).any(|i| self.breaks(i, m))
    }
}

/// A checked plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The file it came from, as given.
    pub file: PathBuf,
    pub description: String,
    /// Cases that must catch it: exact names, or whole-name regular expressions.
    pub catches: Vec<String>,
    pub rules: Vec<Rule>,
}

/// The line a `kernel_log` rule logs when it names none: the shape of a kernel WARNING.
pub const DEFAULT_LINE: &str = "WARNING: CPU: 0 PID: 1 at drivers/gpu/drm/drm_pagemap.c:400 \
                                drm_pagemap_migrate_to_devmem+0x1f0/0x5c0 [drm_gpusvm]";

impl Plan {
    /// Parses plan `text` read from `file`, for migrations of at most [`MIGRATION_PAGES`].
    pub fn parse(text: &str, file: &Path) -> Result<Plan, YamlError> {
        Plan::parse_for(text, file, MIGRATION_PAGES)
    }

    /// Parses plan `text` read from `file`, for a device whose migrations move at most
    /// `migration_pages` pages (its largest chunk): the bound of `page N` and `offset` within
    /// a migration.
    pub fn parse_for(text: &str, file: &Path, migration_pages: u64) -> Result<Plan, YamlError> {
        let raw: PlanText = yaml::parse(text, file)?;
        let at = |path: FieldPath, msg: String| YamlError::at(file, text, &path, msg);
        if raw.rules.is_empty() {
            return Err(at(
                FieldPath::root().key("rules"),
                "a plan needs at least one rule".into(),
            ));
        }
        if raw.catches.is_empty() {
            return Err(at(
                FieldPath::root().key("catches"),
                "name at least one case that must catch this plan".into(),
            ));
        }
        for (i, c) in raw.catches.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&format!("^(?:{c})$")) {
                return Err(at(
                    FieldPath::root().key("catches").index(i),
                    format!("`{c}` is neither a case name nor a regular expression: {e}"),
                ));
            }
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let field = |name: &str| FieldPath::root().key("rules").index(i).key(name);
            let given: [(&str, bool); 6] = [
                ("words", r.words.is_some()),
                ("offset", r.offset.is_some()),
                ("factor", r.factor.is_some()),
                ("growth", r.growth.is_some()),
                ("line", r.line.is_some()),
                ("bytes", r.bytes.is_some()),
            ];
            for (name, set) in given {
                if set && !r.kind.params().contains(&name) {
                    return Err(at(
                        field(name),
                        format!(
                            "kind {} does not take `{name}`{}",
                            r.kind.name(),
                            match r.kind.params() {
                                [] => String::new(),
                                p => format!(" (it takes {})", p.join(", ")),
                            }
                        ),
                    ));
                }
            }
            let migration_fields = [
                ("direction", r.direction.is_some()),
                ("trigger", r.trigger.is_some()),
                ("pages", r.pages.is_some()),
                ("of", r.of.is_some()),
                ("cold", r.cold.is_some()),
            ];
            for (name, set) in migration_fields {
                if set && !r.kind.on_migration() {
                    return Err(at(
                        field(name),
                        format!(
                            "kind {} does not happen on a migration, so `{name}` means nothing \
                             for it",
                            r.kind.name()
                        ),
                    ));
                }
            }
            if r.helpers.is_some() && !r.kind.on_allocation() {
                return Err(at(
                    field("helpers"),
                    format!(
                        "kind {} does not happen on one allocation, so `helpers` means nothing \
                         for it",
                        r.kind.name()
                    ),
                ));
            }
            let of = r.of.unwrap_or_default();
            let pages = match &r.pages {
                None if r.kind.per_page()
                    && !matches!(r.kind, Kind::Stale | Kind::EvictWithoutCopy) =>
                {
                    Pages::First
                }
                None => Pages::All,
                Some(p) => Pages::parse(p).ok_or_else(|| {
                    at(
                        field("pages"),
                        format!("`{p}`: expected first, last, all, every N (N > 0) or page N"),
                    )
                })?,
            };
            if let (Of::Migration, Pages::Page(n)) = (of, pages) {
                if n >= migration_pages {
                    return Err(at(
                        field("pages"),
                        format!(
                            "`page {n}` of a migration never exists: a migration moves at most \
                             {migration_pages} pages (page {} is its last); say `of: allocation` \
                             to count in the allocation",
                            migration_pages - 1
                        ),
                    ));
                }
            }
            let trigger = r.trigger.map(TriggerText::trigger);
            // A trigger implies a direction; a contradiction would make the rule never fire.
            let implied = match trigger {
                Some(Trigger::GpuFault) => Some(Direction::ToVram),
                Some(Trigger::CpuFault | Trigger::Eviction) => Some(Direction::ToRam),
                _ => None,
            };
            let direction = match (r.direction, implied) {
                (Some(d), Some(i)) if d != i => {
                    return Err(at(
                        field("direction"),
                        format!(
                            "a {} migration never goes {}",
                            trigger_name(trigger),
                            d.name()
                        ),
                    ))
                }
                (d, i) => d.or(i),
            };
            let eviction_only = matches!(r.kind, Kind::ZeroOnEviction | Kind::EvictWithoutCopy);
            if eviction_only && direction == Some(Direction::ToVram) {
                // Said where the file says it: the direction written, or the trigger that
                // implies it.
                return Err(match r.direction {
                    Some(_) => at(
                        field("direction"),
                        format!(
                            "kind {} breaks evictions, which go to RAM only",
                            r.kind.name()
                        ),
                    ),
                    None => at(
                        field("trigger"),
                        format!(
                            "a {} migration goes to VRAM, and kind {} breaks evictions, which go \
                             to RAM only",
                            trigger_name(trigger),
                            r.kind.name()
                        ),
                    ),
                });
            }
            if r.nth == Some(0) {
                return Err(at(field("nth"), "nth counts from 1".into()));
            }
            let probability = r.probability.unwrap_or(1.0);
            if !(0.0..=1.0).contains(&probability) || probability == 0.0 {
                return Err(at(
                    field("probability"),
                    format!("expected a probability in (0, 1], got {probability}"),
                ));
            }
            let factor = r
                .factor
                .unwrap_or(if r.growth.is_some() { 1.0 } else { 2.0 });
            if !(factor.is_finite() && factor >= 1.0) {
                return Err(at(
                    field("factor"),
                    format!("expected a slowdown factor of at least 1, got {factor}"),
                ));
            }
            if factor > MAX_FACTOR {
                return Err(at(
                    field("factor"),
                    format!(
                        "a slowdown factor of {factor:e} is more than the largest the reference \
                         device takes, {MAX_FACTOR:e} (a 2 MiB migration then takes minutes)"
                    ),
                ));
            }
            if r.words == Some(0) {
                return Err(at(field("words"), "corrupt at least 1 word".into()));
            }
            if r.offset == Some(0) {
                return Err(at(
                    field("offset"),
                    "an offset of 0 copies the right page".into(),
                ));
            }
            if let (Of::Migration, Some(o)) = (of, r.offset) {
                if o.unsigned_abs() >= migration_pages {
                    return Err(at(
                        field("offset"),
                        format!(
                            "an offset of {o} pages reaches past every migration: a migration \
                             moves at most {migration_pages} pages, and the offset wraps around \
                             inside it; say `of: allocation` to count in the allocation"
                        ),
                    ));
                }
            }
            rules.push(Rule {
                kind: r.kind,
                direction: direction.or(match r.kind {
                    Kind::Drop | Kind::Phantom => Some(Direction::ToVram),
                    Kind::Stale | Kind::ZeroOnEviction | Kind::EvictWithoutCopy => {
                        Some(Direction::ToRam)
                    }
                    _ => None,
                }),
                trigger: match r.kind {
                    Kind::ZeroOnEviction | Kind::EvictWithoutCopy => Some(Trigger::Eviction),
                    _ => trigger,
                },
                nth: r.nth,
                pages,
                of,
                helpers: r.helpers.unwrap_or(false),
                cold: r.cold.unwrap_or(false),
                probability,
                words: r.words.unwrap_or(1),
                offset: r.offset.unwrap_or(1),
                factor,
                growth: r.growth.unwrap_or_default(),
                line: r.line.unwrap_or_else(|| DEFAULT_LINE.to_string()),
                bytes: r.bytes.unwrap_or(2 << 20),
            });
        }
        Ok(Plan {
            file: file.to_path_buf(),
            description: raw.description,
            catches: raw.catches,
            rules,
        })
    }

    /// Reads and parses the plan at `path`, for migrations of at most [`MIGRATION_PAGES`].
    pub fn load(path: &Path) -> Result<Plan, String> {
        Plan::load_for(path, MIGRATION_PAGES)
    }

    /// Reads and parses the plan at `path` for a device whose migrations move at most
    /// `migration_pages` pages.
    pub fn load_for(path: &Path, migration_pages: u64) -> Result<Plan, String> {
        let text = crate::util::yaml::read_text(path, path).map_err(|e| e.to_string())?;
        Plan::parse_for(&text, path, migration_pages).map_err(|e| e.to_string())
    }

    /// Whether any rule slows a path (caught by timing, against a baseline).
    pub fn slows(&self) -> bool {
        self.rules.iter().any(|r| r.kind == Kind::Slow)
    }

    /// Whether any rule logs into the kernel log (which then needs `--kmsg FILE`).
    pub fn logs(&self) -> bool {
        self.rules.iter().any(|r| r.kind == Kind::KernelLog)
    }
}

fn trigger_name(t: Option<Trigger>) -> String {
    t.map_or("any".into(), |t| t.to_string())
}

/// What the rules that fired on one migration do to it, in plan order.
#[derive(Clone, Debug, Default)]
pub struct Fired {
    pub rules: Vec<Rule>,
}

impl Fired {
    pub fn any(&self, kind: Kind) -> bool {
        self.rules.iter().any(|r| r.kind == kind)
    }

    /// The fired rules that break page `i` of `m`, in plan order.
    pub fn on_page<'s>(
        &'s self,
        i: usize,
        m: &'s Migration<'s>,
    ) -> impl Iterator<Item = &'s Rule> + 's {
        self.rules
            .iter()
            .filter(move |r| r.kind.per_page() && r.breaks(i, m))
    }

    /// Whether a fired rule that skips the copy (`stale`, `evict_without_copy`) breaks page
    /// `i` of `m`.
    pub fn skips_copy(&self, i: usize, m: &Migration) -> bool {
        self.on_page(i, m)
            .any(|r| matches!(r.kind, Kind::Stale | Kind::EvictWithoutCopy))
    }

    /// Which of `drop` and `phantom` applies: the first of them in plan order.
    pub fn moves_nothing(&self) -> Option<Kind> {
        self.rules
            .iter()
            .map(|r| r.kind)
            .find(|k| matches!(k, Kind::Drop | Kind::Phantom))
    }

    /// How many times its cost the migration takes: the `slow` factors multiplied, at most
    /// [`MAX_FACTOR`]; `migrated_bytes` is what its operation had already migrated.
    pub fn slowdown(&self, migrated_bytes: u64, quadratic_bytes: u64) -> f64 {
        let product: f64 = self
            .rules
            .iter()
            .filter(|r| r.kind == Kind::Slow)
            .map(|r| match r.growth {
                Growth::Linear => r.factor,
                Growth::Quadratic => {
                    r.factor * (1.0 + migrated_bytes as f64 / quadratic_bytes as f64)
                }
            })
            .product();
        product.min(MAX_FACTOR)
    }
}

/// A plan in force on one simulated GPU: how often each rule has matched and fired, and its
/// dice.
#[derive(Clone, Debug)]
pub struct Faults {
    plan: Option<Plan>,
    matched: Vec<u64>,
    fired: Vec<u64>,
    rng: Rng,
    /// Where `kernel_log` rules write (`--kmsg FILE`).
    kmsg: Option<PathBuf>,
    /// VRAM counted in use after frees (`vram_leak`).
    pub leaked: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

impl Faults {
    /// No plan: nothing breaks.
    pub fn none() -> Faults {
        Faults {
            plan: None,
            matched: Vec::new(),
            fired: Vec::new(),
            rng: Rng::new(0),
            kmsg: None,
            leaked: 0,
        }
    }

    /// `plan` in force, its probabilities drawn from `seed`; `kmsg` is the kernel log file its
    /// `kernel_log` rules write to.
    pub fn new(plan: Plan, seed: u64, kmsg: Option<PathBuf>) -> Faults {
        Faults {
            matched: vec![0; plan.rules.len()],
            fired: vec![0; plan.rules.len()],
            plan: Some(plan),
            rng: Rng::new(seed ^ 0x6661_756c_7473),
            kmsg,
            leaked: 0,
        }
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// Per rule of the plan, in plan order: how often it matched and fired so far. Empty
    /// without a plan.
    pub fn injected(&self) -> Vec<Injected> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        plan.rules
            .iter()
            .enumerate()
            .map(|(i, r)| Injected {
                rule: i,
                kind: r.kind.name(),
                matched: self.matched[i],
                fired: self.fired[i],
            })
            .collect()
    }

    /// The rules of `kinds` that fire on this occurrence: those `matches` accepts are
    /// counted, then `nth` and `probability` applied.
    fn fire(&mut self, kinds: &[Kind], matches: impl Fn(&Rule) -> bool) -> Fired {
        let mut fired = Fired::default();
        let Some(plan) = &self.plan else {
            return fired;
        };
        for (i, rule) in plan.rules.iter().enumerate() {
            if !kinds.contains(&rule.kind) || !matches(rule) {
                continue;
            }
            self.matched[i] += 1;
            if rule.nth.is_some_and(|n| n != self.matched[i]) {
                continue;
            }
            let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if rule.probability < 1.0 && draw >= rule.probability {
                continue;
            }
            self.fired[i] += 1;
            fired.rules.push(rule.clone());
        }
        fired
    }

    /// The migration rules that fire on migration `m`; a `kernel_log` rule among them has
    /// already logged its line.
    pub fn on_migration(&mut self, m: &Migration) -> Fired {
        if self.plan.is_none() {
            return Fired::default();
        }
        const KINDS: [Kind; 9] = [
            Kind::Corrupt,
            Kind::WrongPage,
            Kind::Phantom,
            Kind::Drop,
            Kind::Stale,
            Kind::ZeroOnEviction,
            Kind::EvictWithoutCopy,
            Kind::Slow,
            Kind::KernelLog,
        ];
        let fired = self.fire(&KINDS, |r| r.matches(m));
        for rule in fired.rules.iter().filter(|r| r.kind == Kind::KernelLog) {
            self.log(&rule.line);
        }
        fired
    }

    /// Whether a rule of `kind` (one that does not happen on migrations) fires now, on an
    /// allocation that is a helper's or not (`helper`; false for what concerns none).
    pub fn on(&mut self, kind: Kind, helper: bool) -> bool {
        self.plan.is_some() && self.fire(&[kind], |r| r.helpers || !helper).any(kind)
    }

    /// An allocation was freed (a helper's or not): a `vram_leak` rule that fires leaves its
    /// bytes counted.
    pub fn on_free(&mut self, helper: bool) {
        if self.plan.is_none() {
            return;
        }
        let fired = self.fire(&[Kind::VramLeak], |r| r.helpers || !helper);
        self.leaked += fired.rules.iter().map(|r| r.bytes).sum::<u64>();
    }

    /// Appends `line` to the kernel log file as a kmsg record at warning level, numbered after
    /// the file's last record. Without a file, the line goes to stderr (a plan that logs is
    /// refused at setup without `--kmsg`, so this is only reached from tests).
    fn log(&self, line: &str) {
        // `{pid}`: this process, as a WARNING names the task that hit it; what lets the runner
        // charge the line to the case whose process logged it.
        let line = &line.replace("{pid}", &std::process::id().to_string());
        let Some(path) = &self.kmsg else {
            eprintln!("svmconf: sim kernel: {line}");
            return;
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let next = text
            .lines()
            .rev()
            .find_map(|l| l.split(',').nth(1)?.parse::<u64>().ok())
            .map_or(0, |s| s + 1);
        let record = format!("4,{next},{},-;{line}\n", next * 1000);
        let written = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(record.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "svmconf: sim kernel: cannot log into `{}`: {e}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn plan(rules: &str) -> Result<Plan, String> {
        let text = format!("description: test\ncatches: [x]\nrules:\n{rules}");
        Plan::parse(&text, Path::new("p.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_rule_takes_its_defaults_and_implied_direction() {
        let p = plan("  - kind: corrupt\n    trigger: cpu_fault\n").unwrap();
        let r = &p.rules[0];
        assert_eq!(r.direction, Some(Direction::ToRam));
        assert_eq!((r.pages, r.probability, r.words), (Pages::First, 1.0, 1));
        let p = plan("  - kind: zero_on_eviction\n    pages: every 2\n").unwrap();
        assert_eq!(p.rules[0].trigger, Some(Trigger::Eviction));
        assert_eq!(p.rules[0].pages, Pages::Every(2));
    }

    #[rstest]
    #[case::unknown_kind(
        "  - kind: explode\n",
        "p.yaml:4:11: rules[0].kind: unknown variant `explode`"
    )]
    #[case::unknown_field(
        "  - kind: corrupt\n    colour: red\n",
        "p.yaml:5:5: rules[0]: unknown field `colour`"
    )]
    #[case::param_of_another_kind(
        "  - kind: corrupt\n    factor: 2\n",
        "p.yaml:5:13: rules[0].factor: kind corrupt does not take `factor` (it takes words)"
    )]
    #[case::trigger_on_a_reset(
        "  - kind: reset_keeps_vram\n    trigger: prefetch\n",
        "p.yaml:5:14: rules[0].trigger: kind reset_keeps_vram does not happen on a migration, so `trigger` means nothing for it"
    )]
    #[case::contradiction(
        "  - kind: corrupt\n    trigger: gpu_fault\n    direction: to_ram\n",
        "p.yaml:6:16: rules[0].direction: a gpu-fault migration never goes to_ram"
    )]
    #[case::bad_pages(
        "  - kind: corrupt\n    pages: every 0\n",
        "p.yaml:5:12: rules[0].pages: `every 0`: expected first, last, all, every N (N > 0) or page N"
    )]
    #[case::nth_zero(
        "  - kind: hang\n    nth: 0\n",
        "p.yaml:5:10: rules[0].nth: nth counts from 1"
    )]
    #[case::probability(
        "  - kind: hang\n    probability: 1.5\n",
        "p.yaml:5:18: rules[0].probability: expected a probability in (0, 1], got 1.5"
    )]
    #[case::speedup(
        "  - kind: slow\n    factor: 0.5\n",
        "p.yaml:5:13: rules[0].factor: expected a slowdown factor of at least 1, got 0.5"
    )]
    #[case::zero_on_eviction_to_vram(
        "  - kind: zero_on_eviction\n    direction: to_vram\n",
        "p.yaml:5:16: rules[0].direction: kind zero_on_eviction breaks evictions, which go to RAM only"
    )]
    #[case::eviction_kind_on_a_trigger_to_vram(
        "  - kind: zero_on_eviction\n    trigger: gpu_fault\n",
        "p.yaml:5:14: rules[0].trigger: a gpu-fault migration goes to VRAM, and kind \
         zero_on_eviction breaks evictions, which go to RAM only"
    )]
    #[case::page_beyond_any_migration(
        "  - kind: corrupt\n    pages: page 600\n",
        "p.yaml:5:12: rules[0].pages: `page 600` of a migration never exists: a migration moves at most 512 pages"
    )]
    #[case::offset_beyond_any_migration(
        "  - kind: wrong_page\n    offset: -512\n",
        "p.yaml:5:13: rules[0].offset: an offset of -512 pages reaches past every migration"
    )]
    #[case::endless_slowdown(
        "  - kind: slow\n    factor: 1e300\n",
        "p.yaml:5:13: rules[0].factor: a slowdown factor of 1e300 is more than the largest the reference device takes, 1e6"
    )]
    #[case::of_without_pages(
        "  - kind: hang\n    of: allocation\n",
        "p.yaml:5:9: rules[0].of: kind hang does not happen on a migration, so `of` means nothing for it"
    )]
    #[case::helpers_of_a_reset(
        "  - kind: reset_loses_system\n    helpers: true\n",
        "p.yaml:5:14: rules[0].helpers: kind reset_loses_system does not happen on one allocation"
    )]
    #[case::unknown_of(
        "  - kind: corrupt\n    of: range\n",
        "p.yaml:5:9: rules[0].of: unknown variant `range`"
    )]
    fn bad_rules_are_named_by_file_line_and_field(#[case] rules: &str, #[case] message: &str) {
        let e = plan(rules).unwrap_err();
        assert!(e.starts_with(message), "{e}\nexpected: {message}");
    }

    #[test]
    fn a_plan_without_rules_or_catchers_is_refused() {
        let e = Plan::parse(
            "description: d\ncatches: []\nrules: []\n",
            Path::new("p.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rules: a plan needs at least one rule"), "{e}");
        let e = Plan::parse(
            "description: d\ncatches: []\nrules: [{kind: hang}]\n",
            Path::new("p.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("catches: name at least one case"), "{e}");
    }

    #[test]
    fn nth_and_direction_choose_the_occurrence() {
        let p =
            plan("  - kind: corrupt\n    trigger: prefetch\n    direction: to_vram\n    nth: 2\n")
                .unwrap();
        let mut f = Faults::new(p, 1, None);
        let mut fires = |direction, trigger| {
            f.on_migration(&Migration {
                direction,
                trigger,
                pages: &[0, 1],
                alloc_pages: 2,
                helper: false,
                first: false,
            })
            .any(Kind::Corrupt)
        };
        assert!(!fires(Direction::ToVram, Trigger::Prefetch));
        assert!(!fires(Direction::ToVram, Trigger::GpuFault));
        assert!(!fires(Direction::ToRam, Trigger::Prefetch));
        assert!(fires(Direction::ToVram, Trigger::Prefetch));
        assert!(!fires(Direction::ToVram, Trigger::Prefetch));
    }

    #[test]
    fn probability_is_drawn_from_the_seed() {
        let p = plan("  - kind: hang\n    probability: 0.25\n").unwrap();
        let count = |seed| {
            let mut f = Faults::new(p.clone(), seed, None);
            (0..4000).filter(|_| f.on(Kind::Hang, false)).count()
        };
        assert_eq!(
            count(7),
            count(7),
            "the same seed fires the same occurrences"
        );
        let n = count(7);
        assert!((800..1200).contains(&n), "{n} of 4000 at 0.25");
    }

    #[test]
    fn the_bound_of_a_migration_is_the_devices_largest_chunk() {
        let text = "description: d\ncatches: [x]\nrules:\n  - kind: corrupt\n    pages: page 600\n";
        assert!(Plan::parse(text, Path::new("p.yaml")).is_err());
        let p = Plan::parse_for(text, Path::new("p.yaml"), 1024).unwrap();
        assert_eq!(p.rules[0].pages, Pages::Page(600));
        // Counted in the allocation, any page can be named.
        let p = plan("  - kind: corrupt\n    pages: page 70000\n    of: allocation\n").unwrap();
        assert_eq!(
            (p.rules[0].pages, p.rules[0].of),
            (Pages::Page(70000), Of::Allocation)
        );
        let p = plan("  - kind: wrong_page\n    offset: 4096\n    of: allocation\n").unwrap();
        assert_eq!(p.rules[0].offset, 4096);
        let p = plan("  - kind: slow\n    factor: 1e6\n").unwrap();
        assert_eq!(p.rules[0].factor, MAX_FACTOR);
    }

    #[test]
    fn drop_phantom_and_stale_keep_their_old_direction_unless_told() {
        let dir = |rules: &str| plan(rules).unwrap().rules[0].direction;
        assert_eq!(dir("  - kind: drop\n"), Some(Direction::ToVram));
        assert_eq!(
            dir("  - kind: phantom\n    trigger: prefetch\n"),
            Some(Direction::ToVram)
        );
        assert_eq!(
            dir("  - kind: stale\n    trigger: prefetch\n"),
            Some(Direction::ToRam)
        );
        assert_eq!(
            dir("  - kind: drop\n    direction: to_ram\n"),
            Some(Direction::ToRam)
        );
        assert_eq!(
            dir("  - kind: phantom\n    trigger: cpu_fault\n"),
            Some(Direction::ToRam)
        );
        assert_eq!(
            dir("  - kind: stale\n    trigger: gpu_fault\n"),
            Some(Direction::ToVram)
        );
        assert_eq!(
            dir("  - kind: stale\n    direction: to_vram\n"),
            Some(Direction::ToVram)
        );
        // Page defaults: whole migrations for stale, the first page for corrupt.
        assert_eq!(
            plan("  - kind: stale\n").unwrap().rules[0].pages,
            Pages::All
        );
        assert_eq!(
            plan("  - kind: corrupt\n").unwrap().rules[0].pages,
            Pages::First
        );
    }

    fn migration(pages: &[u64], alloc_pages: u64, helper: bool) -> Migration<'_> {
        Migration {
            direction: Direction::ToVram,
            trigger: Trigger::Prefetch,
            pages,
            alloc_pages,
            helper,
            first: false,
        }
    }

    #[test]
    fn rules_of_one_kind_all_fire_and_are_counted_each() {
        let p = plan(
            "  - kind: corrupt\n  - kind: corrupt\n    pages: last\n  - kind: slow\n    factor: 2\n  - kind: slow\n    factor: 3\n  - kind: corrupt\n    trigger: eviction\n",
        )
        .unwrap();
        let mut f = Faults::new(p, 1, None);
        let pages: Vec<u64> = (0..4).collect();
        let m = migration(&pages, 4, false);
        let fired = f.on_migration(&m);
        assert_eq!(fired.rules.len(), 4);
        assert_eq!(fired.on_page(0, &m).count(), 1);
        assert_eq!(fired.on_page(3, &m).count(), 1);
        assert_eq!(fired.slowdown(0, 1), 6.0);
        let counts: Vec<(usize, String, u64, u64)> = f
            .injected()
            .into_iter()
            .map(|i| (i.rule, i.kind, i.matched, i.fired))
            .collect();
        assert_eq!(
            counts,
            [
                (0, "corrupt".into(), 1, 1),
                (1, "corrupt".into(), 1, 1),
                (2, "slow".into(), 1, 1),
                (3, "slow".into(), 1, 1),
                (4, "corrupt".into(), 0, 0),
            ]
        );
        assert!(Faults::none().injected().is_empty());
    }

    #[test]
    fn slowdowns_multiply_up_to_the_cap() {
        let p = plan("  - kind: slow\n    factor: 1e6\n  - kind: slow\n    factor: 1e6\n").unwrap();
        let mut f = Faults::new(p, 1, None);
        let fired = f.on_migration(&migration(&[0], 1, false));
        assert_eq!(fired.slowdown(0, 1), MAX_FACTOR);
    }

    #[test]
    fn pages_of_the_allocation_match_only_migrations_that_hold_them() {
        let p = plan("  - kind: corrupt\n    pages: page 600\n    of: allocation\n    nth: 1\n")
            .unwrap();
        let mut f = Faults::new(p, 1, None);
        let low: Vec<u64> = (0..512).collect();
        let high: Vec<u64> = (512..1024).collect();
        assert!(f
            .on_migration(&migration(&low, 1024, false))
            .rules
            .is_empty());
        let m = migration(&high, 1024, false);
        let fired = f.on_migration(&m);
        assert_eq!(
            fired.rules.len(),
            1,
            "the first migration holding page 600 is the 1st"
        );
        let picked: Vec<usize> = (0..512)
            .filter(|&i| fired.on_page(i, &m).count() > 0)
            .collect();
        assert_eq!(picked, [600 - 512]);
        assert_eq!((f.injected()[0].matched, f.injected()[0].fired), (1, 1));
    }

    #[test]
    fn a_wrong_page_source_is_counted_where_the_plan_says() {
        let rule = |text: &str| plan(text).unwrap().rules[0].clone();
        let pages = [10, 11, 12];
        let m = migration(&pages, 100, false);
        // Within the migration it wraps; in the allocation it reaches any page of it.
        let r = rule("  - kind: wrong_page\n    pages: last\n    offset: 1\n");
        assert_eq!(r.source(2, &m), Some(10));
        let r = rule("  - kind: wrong_page\n    offset: 80\n    of: allocation\n");
        assert_eq!(r.source(0, &m), Some(90));
        // Outside the allocation: left alone, so the migration does not match.
        let r = rule("  - kind: wrong_page\n    pages: all\n    offset: 95\n    of: allocation\n");
        assert_eq!(r.source(0, &m), None);
        assert!(!r.matches(&m));
        // A source that is the page itself copies the right data: no match either.
        let one = migration(&[10], 100, false);
        let r = rule("  - kind: wrong_page\n    offset: 1\n");
        assert!(!r.matches(&one));
    }

    #[test]
    fn helpers_are_left_alone_unless_a_rule_asks_for_them() {
        let p = plan(
            "  - kind: corrupt\n    nth: 1\n  - kind: corrupt\n    helpers: true\n  - kind: hang\n",
        )
        .unwrap();
        let mut f = Faults::new(p, 1, None);
        let fired = f.on_migration(&migration(&[0], 1, true));
        assert_eq!(fired.rules.len(), 1);
        assert!(fired.rules[0].helpers);
        assert!(!f.on(Kind::Hang, true));
        // The helper's migration did not count towards `nth: 1`.
        assert_eq!(f.on_migration(&migration(&[0], 1, false)).rules.len(), 2);
        assert!(f.on(Kind::Hang, false));
        let counts: Vec<(u64, u64)> = f.injected().iter().map(|i| (i.matched, i.fired)).collect();
        assert_eq!(counts, [(1, 1), (2, 2), (1, 1)]);
    }

    #[test]
    fn drop_and_phantom_together_do_what_the_first_says() {
        let p = plan("  - kind: phantom\n  - kind: drop\n").unwrap();
        let mut f = Faults::new(p, 1, None);
        assert_eq!(
            f.on_migration(&migration(&[0], 1, false)).moves_nothing(),
            Some(Kind::Phantom)
        );
    }

    #[test]
    fn pages_select_within_a_migration() {
        let all: Vec<bool> = (0..5).map(|i| Pages::Every(2).picks(i, 5)).collect();
        assert_eq!(all, [true, false, true, false, true]);
        assert!(Pages::Last.picks(4, 5) && !Pages::Last.picks(3, 5));
        assert!(Pages::Page(3).picks(3, 5) && !Pages::Page(3).picks(0, 5));
    }

    #[test]
    fn a_kernel_log_rule_appends_a_numbered_warning_record() {
        let dir = tempfile::tempdir().unwrap();
        let kmsg = dir.path().join("kmsg");
        std::fs::write(&kmsg, "5,41,1000,-;svmconf: begin x\n").unwrap();
        let p = plan("  - kind: kernel_log\n").unwrap();
        let mut f = Faults::new(p, 1, Some(kmsg.clone()));
        let pages = [0];
        f.on_migration(&Migration {
            direction: Direction::ToVram,
            trigger: Trigger::GpuFault,
            pages: &pages,
            alloc_pages: 1,
            helper: false,
            first: false,
        });
        let text = std::fs::read_to_string(&kmsg).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("4,42,42000,-;WARNING: CPU: 0"), "{last}");
        let record = crate::observe::kmsg::parse_record(last).unwrap();
        assert_eq!(record.level, 4);
    }

    #[test]
    fn a_leak_counts_on_each_free_it_fires_on() {
        let p = plan("  - kind: vram_leak\n    bytes: 4096\n    nth: 2\n").unwrap();
        let mut f = Faults::new(p, 1, None);
        f.on_free(false);
        assert_eq!(f.leaked, 0);
        f.on_free(true);
        assert_eq!(f.leaked, 0, "a helper's free is not counted");
        f.on_free(false);
        assert_eq!(f.leaked, 4096);
    }

    #[test]
    fn a_cold_rule_matches_only_an_allocations_first_migration_to_vram() {
        let p = plan("  - kind: slow\n    cold: true\n    factor: 3\n").unwrap();
        let mut f = Faults::new(p, 1, None);
        let mut m = migration(&[0, 1], 2, false);
        m.first = true;
        assert_eq!(f.on_migration(&m).slowdown(0, 1), 3.0);
        m.first = false;
        assert_eq!(f.on_migration(&m).slowdown(0, 1), 1.0);
        let e = plan("  - kind: hang\n    cold: true\n").unwrap_err();
        assert!(
            e.contains("rules[0].cold: kind hang does not happen on a migration"),
            "{e}"
        );
    }
}
