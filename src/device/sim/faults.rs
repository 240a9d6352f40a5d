//! Fault plans for the reference device (`--sim-faults FILE`): rules that each break one thing
//! the series must get right, when and where the plan says, so that the suite can be shown to
//! catch each defect with the right diagnosis (the kill matrix, `svmconf kill-matrix`).
//!
//! A plan (`fixtures/faults/*.yaml`):
//! ```yaml
//! description: a CPU fault back to RAM flips a bit in one word of the first page it copies
//! catches: [cpu_fault::read::managed::2MiB]   # cases that must catch it (names or regexes)
//! rules:
//!   - kind: corrupt          # what to break (the kinds below)
//!     direction: to_ram      # migrations to_vram or to_ram (default: both)
//!     trigger: cpu_fault     # prefetch | gpu_fault | cpu_fault | eviction (default: any)
//!     nth: 1                 # only the nth occurrence this rule matches (default: every one)
//!     pages: first           # first | last | all | every N | page N, within the migration
//!     probability: 1.0       # per occurrence, drawn from the run's seed (default 1)
//!     words: 1               # kind-specific: see below
//! ```
//! Kinds, and what an occurrence is for each:
//! - on a migration: `corrupt` (flip bit 8 of `words` words of each selected page, default 1),
//!   `wrong_page` (copy the page `offset` pages away, default 1, into each selected page),
//!   `phantom` (report the migration, move nothing; to VRAM only), `drop` (move nothing,
//!   report nothing; to VRAM only), `stale` (to RAM: copy nothing, the system page keeps what it held before),
//!   `zero_on_eviction` (an eviction's selected pages come back zeroed), `evict_without_copy`
//!   (an eviction copies nothing back), `slow` (the migration costs `factor` times as much, or
//!   with `growth: quadratic` grows with what its operation already migrated: quadratic in
//!   size),
//!   `kernel_log` (the kernel logs `line`, a WARNING by default, into `--kmsg FILE`);
//! - `hang`: a GPU fault never completes (the launch's wait times out);
//! - `ignore_preferred`: a GPU fault on a page that prefers system memory migrates it;
//! - `ignore_prefetch`: a prefetch moves nothing, yet takes the time it would have;
//! - `vram_leak`: freeing an allocation leaves `bytes` (default 2 MiB) counted as VRAM in use;
//! - `reset_keeps_vram`: a GPU reset keeps VRAM contents; `reset_loses_system`: a GPU reset
//!   zeroes every page of system memory it should not touch.
//!
//! An unknown kind or field, a field the kind does not take, or a value out of range is an
//! error naming the file, line, column and field.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rng::Rng;
use crate::device::Trigger;
use crate::util::yaml::{self, FieldPath, YamlError};

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
    /// Whether its occurrences are migrations (and `direction`, `trigger`, `pages` apply).
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
}

/// Which way a migration goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ToVram,
    ToRam,
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

/// Which pages of a migration a rule touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    First,
    Last,
    All,
    /// Every Nth page, starting with the first.
    Every(u64),
    /// The page at this index within the migration, if it has one.
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

    /// Whether page `i` of a migration of `n` pages is selected.
    pub fn picks(self, i: usize, n: usize) -> bool {
        match self {
            Pages::First => i == 0,
            Pages::Last => i + 1 == n,
            Pages::All => true,
            Pages::Every(k) => i as u64 % k == 0,
            Pages::Page(k) => i as u64 == k,
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
    pub probability: f64,
    pub words: u32,
    pub offset: i64,
    pub factor: f64,
    pub growth: Growth,
    pub line: String,
    pub bytes: u64,
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
    /// Parses plan `text` read from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Plan, YamlError> {
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
                            kind_name(r.kind),
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
            ];
            for (name, set) in migration_fields {
                if set && !r.kind.on_migration() {
                    return Err(at(
                        field(name),
                        format!(
                            "kind {} does not happen on a migration, so `{name}` means nothing \
                             for it",
                            kind_name(r.kind)
                        ),
                    ));
                }
            }
            let pages = match &r.pages {
                None => Pages::First,
                Some(p) => Pages::parse(p).ok_or_else(|| {
                    at(
                        field("pages"),
                        format!("`{p}`: expected first, last, all, every N (N > 0) or page N"),
                    )
                })?,
            };
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
                        format!("a {} migration never goes {d:?}", trigger_name(trigger)),
                    ))
                }
                (d, i) => d.or(i),
            };
            let needs_to_ram = matches!(
                r.kind,
                Kind::Stale | Kind::ZeroOnEviction | Kind::EvictWithoutCopy
            );
            if needs_to_ram && direction == Some(Direction::ToVram) {
                return Err(at(
                    field("direction"),
                    format!("kind {} breaks migrations to RAM only", kind_name(r.kind)),
                ));
            }
            if matches!(r.kind, Kind::Drop | Kind::Phantom) && direction == Some(Direction::ToRam) {
                return Err(at(
                    field("direction"),
                    format!(
                        "kind {} breaks migrations to VRAM only: a migration to RAM that does \
                         not happen would leave the CPU faulting forever",
                        kind_name(r.kind)
                    ),
                ));
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
            if r.words == Some(0) {
                return Err(at(field("words"), "corrupt at least 1 word".into()));
            }
            if r.offset == Some(0) {
                return Err(at(
                    field("offset"),
                    "an offset of 0 copies the right page".into(),
                ));
            }
            rules.push(Rule {
                kind: r.kind,
                direction: match r.kind {
                    Kind::Drop | Kind::Phantom => Some(Direction::ToVram),
                    Kind::Stale | Kind::ZeroOnEviction | Kind::EvictWithoutCopy => {
                        Some(Direction::ToRam)
                    }
                    _ => direction,
                },
                trigger: match r.kind {
                    Kind::ZeroOnEviction | Kind::EvictWithoutCopy => Some(Trigger::Eviction),
                    _ => trigger,
                },
                nth: r.nth,
                pages,
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

    /// Reads and parses the plan at `path`.
    pub fn load(path: &Path) -> Result<Plan, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read `{}`: {}",
                path.display(),
                crate::util::text::io_reason(&e)
            )
        })?;
        Plan::parse(&text, path).map_err(|e| e.to_string())
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

fn kind_name(k: Kind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn trigger_name(t: Option<Trigger>) -> String {
    t.map_or("any".into(), |t| t.to_string())
}

/// What the rules that fired on one migration do to it.
#[derive(Clone, Debug, Default)]
pub struct Fired {
    pub rules: Vec<Rule>,
}

impl Fired {
    pub fn any(&self, kind: Kind) -> bool {
        self.rules.iter().any(|r| r.kind == kind)
    }

    pub fn get(&self, kind: Kind) -> Option<&Rule> {
        self.rules.iter().find(|r| r.kind == kind)
    }

    /// Whether page `i` of `n` is selected by a fired rule of `kind`.
    pub fn picks(&self, kind: Kind, i: usize, n: usize) -> bool {
        self.rules
            .iter()
            .any(|r| r.kind == kind && r.pages.picks(i, n))
    }
}

/// A plan in force on one simulated GPU: how often each rule has matched, and its dice.
#[derive(Clone, Debug)]
pub struct Faults {
    plan: Option<Plan>,
    matched: Vec<u64>,
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
            plan: Some(plan),
            rng: Rng::new(seed ^ 0x6661_756c_7473),
            kmsg,
            leaked: 0,
        }
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// The rules of `kinds` that fire on this occurrence: counted, then `nth` and
    /// `probability` applied. `migration` is the occurrence's direction and trigger, for the
    /// rules that happen on migrations.
    fn fire(&mut self, kinds: &[Kind], migration: Option<(Direction, Trigger)>) -> Fired {
        let mut fired = Fired::default();
        let Some(plan) = &self.plan else {
            return fired;
        };
        for (i, rule) in plan.rules.iter().enumerate() {
            if !kinds.contains(&rule.kind) {
                continue;
            }
            if let Some((direction, trigger)) = migration {
                if rule.direction.is_some_and(|d| d != direction)
                    || rule.trigger.is_some_and(|t| t != trigger)
                {
                    continue;
                }
            }
            self.matched[i] += 1;
            if rule.nth.is_some_and(|n| n != self.matched[i]) {
                continue;
            }
            let draw = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if rule.probability < 1.0 && draw >= rule.probability {
                continue;
            }
            fired.rules.push(rule.clone());
        }
        fired
    }

    /// The migration rules that fire on a migration `direction` caused by `trigger`; a
    /// `kernel_log` rule among them has already logged its line.
    pub fn on_migration(&mut self, direction: Direction, trigger: Trigger) -> Fired {
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
        let fired = self.fire(&KINDS, Some((direction, trigger)));
        for rule in fired.rules.iter().filter(|r| r.kind == Kind::KernelLog) {
            self.log(&rule.line);
        }
        fired
    }

    /// Whether a rule of `kind` (one that does not happen on migrations) fires now.
    pub fn on(&mut self, kind: Kind) -> bool {
        self.plan.is_some() && self.fire(&[kind], None).any(kind)
    }

    /// An allocation was freed: a `vram_leak` rule that fires leaves its bytes counted.
    pub fn on_free(&mut self) {
        if self.plan.is_none() {
            return;
        }
        let fired = self.fire(&[Kind::VramLeak], None);
        self.leaked += fired.rules.iter().map(|r| r.bytes).sum::<u64>();
    }

    /// Appends `line` to the kernel log file as a kmsg record at warning level, numbered after
    /// the file's last record. Without a file, the line goes to stderr (a plan that logs is
    /// refused at setup without `--kmsg`, so this is only reached from tests).
    fn log(&self, line: &str) {
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
        "p.yaml:6:16: rules[0].direction: a gpu-fault migration never goes ToRam"
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
    #[case::stale_to_vram(
        "  - kind: stale\n    direction: to_vram\n",
        "p.yaml:5:16: rules[0].direction: kind stale breaks migrations to RAM only"
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
        assert!(!f
            .on_migration(Direction::ToVram, Trigger::Prefetch)
            .any(Kind::Corrupt));
        assert!(!f
            .on_migration(Direction::ToVram, Trigger::GpuFault)
            .any(Kind::Corrupt));
        assert!(!f
            .on_migration(Direction::ToRam, Trigger::Prefetch)
            .any(Kind::Corrupt));
        assert!(f
            .on_migration(Direction::ToVram, Trigger::Prefetch)
            .any(Kind::Corrupt));
        assert!(!f
            .on_migration(Direction::ToVram, Trigger::Prefetch)
            .any(Kind::Corrupt));
    }

    #[test]
    fn probability_is_drawn_from_the_seed() {
        let p = plan("  - kind: hang\n    probability: 0.25\n").unwrap();
        let count = |seed| {
            let mut f = Faults::new(p.clone(), seed, None);
            (0..4000).filter(|_| f.on(Kind::Hang)).count()
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
        f.on_migration(Direction::ToVram, Trigger::GpuFault);
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
        f.on_free();
        assert_eq!(f.leaked, 0);
        f.on_free();
        assert_eq!(f.leaked, 4096);
    }
}
