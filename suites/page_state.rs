//! Page state: where every page of an allocation is after every step of a walk through the
//! migration paths (CPU first touch, prefetch of part, GPU reads, a CPU fault, a CPU write, a
//! GPU write, prefetch back), compared page by page with what the profile's reference policy
//! says. The other suites check the pages a step is about; this one also checks that no page
//! beside them moved, which only exact residency shows (the HMM test driver's SNAPSHOT, the
//! reference device).
//!
//! What the policy decides, and so what each step allows:
//! - a prefetch moves exactly its span;
//! - a GPU access moves what it touches to VRAM where `policy.gpu_fault_migrates`, and may take
//!   along the rest of the largest chunk (`policy.chunk_sizes`) around each touched page;
//!   elsewhere it moves nothing;
//! - a CPU access of a page in VRAM brings back one run of pages holding it, inside the run of
//!   VRAM pages it was part of; one chunk long (`policy.chunk_sizes`) unless
//!   `policy.cpu_fault_migrates_whole_allocation`, where the run is the device allocation.
//!
//! Where a step allows a choice, the walk goes on from what the device chose.
//!
//! `page_state::huge_page` takes one transparent huge page through the same steps.

use std::fmt::Write as _;

use crate::case::{CaseResult, Ctx, Stop};
use crate::check;
use crate::device::{Buf, Location, Span, PAGE_SIZE};

bodies! {
    walk: [Xnack, Residency],
    huge_page: [Xnack, Residency],
}

/// Pages of a transparent huge page (2 MiB).
const HUGE_PAGES: u64 = 512;

/// What a step allows of one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    At(Location),
    /// Either place: the policy lets the device choose (a GPU fault's chunk).
    Either,
}

/// The walk's state: the allocation and where its pages are, as last checked.
struct Walk {
    buf: Buf,
    now: Vec<Location>,
    steps: usize,
}

impl Walk {
    /// Reads the residency of every page and checks it against `want`; the result becomes the
    /// state the next step starts from.
    fn check(&mut self, ctx: &mut Ctx, what: &str, want: &[Want]) -> CaseResult {
        self.steps += 1;
        let got = residency(ctx, self.buf)?;
        let wrong = differences(want, &got);
        if !wrong.is_empty() {
            return Err(self.failure(what, &wrong, &got));
        }
        ctx.note(format!("step {} ({what}): {}", self.steps, runs(&got)));
        self.now = got;
        Ok(())
    }

    /// The failure of the current step: what is wrong, and the pages now and before it.
    fn failure(&self, what: &str, why: &str, got: &[Location]) -> Stop {
        Stop::fail(format!(
            "step {} ({what}): {why}; the pages are now {}, they were {}",
            self.steps,
            runs(got),
            runs(&self.now)
        ))
    }

    /// Everything stays where it is, but for `span`, which must be at `to`.
    fn moved(&self, span: std::ops::Range<u64>, to: Location) -> Vec<Want> {
        (0..self.now.len() as u64)
            .map(|p| {
                Want::At(if span.contains(&p) {
                    to
                } else {
                    self.now[p as usize]
                })
            })
            .collect()
    }

    /// What a GPU access of pages `span` allows (module docs).
    fn gpu_access(&self, ctx: &Ctx, span: std::ops::Range<u64>) -> Vec<Want> {
        if !ctx.profile.policy.gpu_fault_migrates {
            return self.moved(0..0, Location::System);
        }
        let chunk = ctx
            .profile
            .policy
            .chunk_sizes
            .iter()
            .max()
            .map_or(1, |c| (c / PAGE_SIZE).max(1));
        let mut want = self.moved(span.clone(), Location::Vram);
        for (p, w) in want.iter_mut().enumerate() {
            let p = p as u64;
            let block = p / chunk * chunk..(p / chunk + 1) * chunk;
            let shares_a_chunk = block.start < span.end && span.start < block.end;
            if !span.contains(&p) && shares_a_chunk && *w == Want::At(Location::System) {
                *w = Want::Either;
            }
        }
        want
    }

    /// The CPU touched page `page`, which was in VRAM: checks what came back against the
    /// policy (module docs) and that nothing else moved.
    fn cpu_fault(&mut self, ctx: &mut Ctx, page: u64, what: &str) -> CaseResult {
        self.steps += 1;
        let got = residency(ctx, self.buf)?;
        let was = &self.now;
        let changed: Vec<u64> = (0..was.len() as u64)
            .filter(|p| was[*p as usize] != got[*p as usize])
            .collect();
        let fail = |why: String| self.failure(what, &why, &got);
        if got[page as usize] != Location::System {
            return Err(fail(format!("page {page} is still in VRAM")));
        }
        // The run of VRAM pages the touched page was part of.
        let mut lo = page;
        while lo > 0 && was[lo as usize - 1] == Location::Vram {
            lo -= 1;
        }
        let mut hi = page + 1;
        while hi < was.len() as u64 && was[hi as usize] == Location::Vram {
            hi += 1;
        }
        let (first, last) = (changed[0], changed[changed.len() - 1]);
        let back = last + 1 - first;
        if changed.len() as u64 != back || first < lo || last >= hi {
            return Err(fail(format!(
                "the pages that moved ({}) are not one run inside pages {lo}..{hi}, the VRAM \
                 run page {page} was part of",
                list(&changed)
            )));
        }
        // A whole device allocation is made of chunks whose alignment is the virtual
        // address's, which the case does not see: only where the policy migrates the faulting
        // chunk alone is the length known.
        let policy = &ctx.profile.policy;
        let huge_folio = policy.device_private_huge_pages && back == HUGE_PAGES;
        if !policy.cpu_fault_migrates_whole_allocation
            && !policy.chunk_sizes.contains(&(back * PAGE_SIZE))
            && !huge_folio
        {
            return Err(fail(format!(
                "pages {first}..{} came back: {back} pages is not a chunk size {:?} \
                 (policy.cpu_fault_migrates_whole_allocation = false, \
                 policy.device_private_huge_pages = {})",
                last + 1,
                policy.chunk_sizes,
                policy.device_private_huge_pages
            )));
        }
        ctx.note(format!(
            "step {} ({what}): pages {first}..{} came back; {}",
            self.steps,
            last + 1,
            runs(&got)
        ));
        self.now = got;
        Ok(())
    }
}

fn residency(ctx: &mut Ctx, buf: Buf) -> Result<Vec<Location>, Stop> {
    match ctx.dev.residency(buf, buf.all()) {
        Some(r) => Ok(r?),
        None => Err(Stop::skip("the device cannot report page residency")),
    }
}

/// "0..4 system, 4..12 vram": the pages as runs of one location.
fn runs(pages: &[Location]) -> String {
    let mut out = String::new();
    let mut start = 0;
    for p in 1..=pages.len() {
        if p == pages.len() || pages[p] != pages[start] {
            let sep = if out.is_empty() { "" } else { ", " };
            let _ = write!(out, "{sep}{start}..{p} {}", pages[start]);
            start = p;
        }
    }
    out
}

/// The pages that are not where `want` allows, as runs: empty when all are.
fn differences(want: &[Want], got: &[Location]) -> String {
    let bad: Vec<u64> = (0..got.len() as u64)
        .filter(|p| match want[*p as usize] {
            Want::At(l) => got[*p as usize] != l,
            Want::Either => false,
        })
        .collect();
    if bad.is_empty() {
        return String::new();
    }
    let (first, n) = (bad[0], bad.len());
    format!(
        "{n} pages are not where the policy puts them: pages {} (page {first} is in {}, the \
         policy says {})",
        list(&bad),
        got[first as usize],
        match want[first as usize] {
            Want::At(l) => l.to_string(),
            Want::Either => "either".into(),
        }
    )
}

/// Page numbers as runs: "3..5, 9".
fn list(pages: &[u64]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pages.len() {
        let mut j = i;
        while j + 1 < pages.len() && pages[j + 1] == pages[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            pages[i].to_string()
        } else {
            format!("{}..{}", pages[i], pages[j] + 1)
        });
        i = j + 1;
    }
    if out.len() > 6 {
        let more = out.len() - 6;
        out.truncate(6);
        out.push(format!("and {more} more runs"));
    }
    out.join(", ")
}

/// The walk. Generations: 1 written by the CPU first, 2 by the CPU over one page, 3 by the
/// GPU over the first quarter; the data is checked at the end.
fn walk(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let pages = buf.pages();
    check!(
        pages >= 4,
        "fixtures: the walk needs at least 4 pages, the size gives {pages}"
    );
    let quarter = pages / 4;
    let middle = quarter..pages - quarter;
    let mut w = Walk {
        buf,
        now: vec![Location::System; pages as usize],
        steps: 0,
    };
    let span = |r: &std::ops::Range<u64>| Span::pages(r.start, r.end - r.start).clamp(buf.all());

    ctx.cpu_fill(buf, buf.all(), 1)?;
    let want = w.moved(0..pages, Location::System);
    w.check(ctx, "the CPU writes every page", &want)?;

    ctx.dev.prefetch(buf, span(&middle), Location::Vram)?;
    let want = w.moved(middle.clone(), Location::Vram);
    w.check(
        ctx,
        &format!("prefetch of pages {}..{} to VRAM", middle.start, middle.end),
        &want,
    )?;

    ctx.gpu_verify(buf, buf.all(), 1)?;
    let want = w.gpu_access(ctx, 0..pages);
    w.check(ctx, "the GPU reads every page", &want)?;

    // A CPU read of one word in the middle of the VRAM pages.
    let Some(read) = vram_page_near(&w.now, middle.start + (middle.end - middle.start) / 2) else {
        return Err(Stop::fail(
            "no page is in VRAM after the prefetch".to_string(),
        ));
    };
    ctx.cpu_read_first_word(buf, read, 1)?;
    w.cpu_fault(ctx, read, &format!("the CPU reads page {read}"))?;

    // A CPU write of a whole page still in VRAM, if one is left.
    let written = vram_page_near(&w.now, middle.end - 1);
    if let Some(page) = written {
        ctx.cpu_fill(buf, span(&(page..page + 1)), 2)?;
        w.cpu_fault(ctx, page, &format!("the CPU writes page {page}"))?;
    } else {
        ctx.note("no page is left in VRAM for a CPU write: the read brought them all back");
    }

    ctx.gpu_fill(buf, span(&(0..quarter)), 3)?;
    let want = w.gpu_access(ctx, 0..quarter);
    w.check(ctx, &format!("the GPU writes pages 0..{quarter}"), &want)?;

    ctx.dev.prefetch(buf, buf.all(), Location::System)?;
    let want = w.moved(0..pages, Location::System);
    w.check(ctx, "prefetch of everything to system memory", &want)?;

    // The data: generation 3 over the first quarter, 2 on the written page, 1 elsewhere.
    ctx.cpu_verify(buf, span(&(0..quarter)), 3)?;
    let rest = quarter..pages;
    match written {
        Some(page) => {
            ctx.cpu_verify(buf, span(&(quarter..page)), 1)?;
            ctx.cpu_verify(buf, span(&(page..page + 1)), 2)?;
            ctx.cpu_verify(buf, span(&(page + 1..pages)), 1)?;
        }
        None => {
            ctx.cpu_verify(buf, span(&rest), 1)?;
        }
    }
    ctx.dev.free(buf)?;
    Ok(())
}

/// A transparent huge page through migration: the CPU writes an allocation large enough to
/// hold an aligned 2 MiB block, the kernel backs it with a huge page, the huge page is
/// prefetched to VRAM (every one of its 512 pages must go: a huge page the kernel cannot split
/// or move must not leave pages behind), the GPU reads it, the CPU reads one page of it (what
/// comes back follows the policy, as in the walk: a kernel that keeps device-private huge pages
/// brings back 2 MiB, and the profile must say so in `chunk_sizes`), and it goes back. Whether
/// it is still huge after each step is noted: kernels differ there, and so does khugepaged.
/// Skips where the device cannot tell huge mappings (only the HMM test driver can) or the
/// kernel gave the allocation no huge page.
fn huge_page(ctx: &mut Ctx) -> CaseResult {
    let buf = ctx.alloc(ctx.kind, ctx.size)?;
    let pages = buf.pages();
    check!(
        pages >= 2 * HUGE_PAGES,
        "fixtures: a huge page needs an allocation of 4 MiB or more, the size gives {pages} pages"
    );
    ctx.cpu_fill(buf, buf.all(), 1)?;
    let Some(huge) = ctx.dev.huge_mapped(buf, buf.all()) else {
        return Err(Stop::skip(format!(
            "{} cannot tell which pages the CPU maps with huge pages",
            ctx.dev.info().name
        )));
    };
    let Some(first) = huge_block(&huge?) else {
        return Err(Stop::skip(
            "the kernel backed no aligned 2 MiB of the allocation with a transparent huge \
             page (see /sys/kernel/mm/transparent_hugepage/enabled)",
        ));
    };
    let block = first..first + HUGE_PAGES;
    let span = Span::pages(first, HUGE_PAGES);
    ctx.note(format!(
        "pages {}..{} are one transparent huge page",
        block.start, block.end
    ));
    let mut w = Walk {
        buf,
        now: vec![Location::System; pages as usize],
        steps: 0,
    };
    ctx.dev.prefetch(buf, span, Location::Vram)?;
    let want = w.moved(block.clone(), Location::Vram);
    w.check(ctx, "prefetch of the huge page to VRAM", &want)?;
    note_huge(ctx, buf, span, "in VRAM")?;

    ctx.gpu_verify(buf, span, 1)?;
    let want = w.gpu_access(ctx, block.clone());
    w.check(ctx, "the GPU reads the huge page", &want)?;

    let touched = first + HUGE_PAGES / 2;
    ctx.cpu_read_first_word(buf, touched, 1)?;
    w.cpu_fault(ctx, touched, &format!("the CPU reads page {touched}"))?;

    ctx.dev.prefetch(buf, span, Location::System)?;
    let want = w.moved(block, Location::System);
    w.check(ctx, "prefetch of the huge page to system memory", &want)?;
    note_huge(ctx, buf, span, "back in system memory")?;
    ctx.cpu_verify(buf, buf.all(), 1)?;
    ctx.dev.free(buf)?;
    Ok(())
}

/// The first page of the first aligned run of `HUGE_PAGES` pages all mapped huge. The
/// allocation's own alignment is not known here, so any run that long counts; a huge page is
/// always one such run.
fn huge_block(huge: &[bool]) -> Option<u64> {
    let mut run = 0;
    for (p, h) in huge.iter().enumerate() {
        run = if *h { run + 1 } else { 0 };
        if run == HUGE_PAGES {
            return Some(p as u64 + 1 - HUGE_PAGES);
        }
    }
    None
}

/// Notes how many pages of `span` a huge mapping holds now.
fn note_huge(ctx: &mut Ctx, buf: Buf, span: Span, when: &str) -> CaseResult {
    if let Some(huge) = ctx.dev.huge_mapped(buf, span) {
        let n = huge?.iter().filter(|h| **h).count();
        ctx.note(format!(
            "{when}: {n} of {HUGE_PAGES} pages mapped huge ({})",
            if n == 0 {
                "the huge page was split"
            } else {
                "still huge"
            }
        ));
    }
    Ok(())
}

/// The page in VRAM nearest to `page`, looking down first; `None` when none is.
fn vram_page_near(now: &[Location], page: u64) -> Option<u64> {
    let page = page.min(now.len() as u64 - 1);
    (0..=page)
        .rev()
        .chain(page + 1..now.len() as u64)
        .find(|p| now[*p as usize] == Location::Vram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Location::{System as S, Vram as V};

    #[test]
    fn runs_and_lists_name_pages_compactly() {
        assert_eq!(
            runs(&[S, S, V, V, V, S]),
            "0..2 system, 2..5 vram, 5..6 system"
        );
        assert_eq!(list(&[1, 2, 3, 7, 9, 10]), "1..4, 7, 9..11");
        let many: Vec<u64> = (0..20).map(|i| i * 2).collect();
        assert!(list(&many).ends_with("and 14 more runs"), "{}", list(&many));
    }

    #[test]
    fn differences_name_the_first_page_and_accept_either() {
        let want = [Want::At(S), Want::Either, Want::At(V), Want::At(V)];
        assert_eq!(differences(&want, &[S, V, V, V]), "");
        assert_eq!(differences(&want, &[S, S, V, V]), "");
        let d = differences(&want, &[V, S, S, V]);
        assert_eq!(
            d,
            "2 pages are not where the policy puts them: pages 0, 2 (page 0 is in vram, the \
             policy says system)"
        );
    }

    #[test]
    fn a_huge_page_is_the_first_run_of_512_huge_pages() {
        let mut huge = vec![false; 1200];
        assert_eq!(huge_block(&huge), None);
        huge[100..611].iter_mut().for_each(|h| *h = true);
        assert_eq!(huge_block(&huge), None, "511 pages are not a huge page");
        huge[611] = true;
        assert_eq!(huge_block(&huge), Some(100));
    }

    #[test]
    fn the_vram_page_nearest_looks_down_first() {
        assert_eq!(vram_page_near(&[V, S, S, V], 2), Some(0));
        assert_eq!(vram_page_near(&[S, S, S, V], 1), Some(3));
        assert_eq!(vram_page_near(&[S, S], 1), None);
    }
}
