//! Progress: cases done of the total, failures so far, the cases running and for how long, and
//! an estimate of the time left.
//!
//! On a terminal it is one live line under libtest's lines. libtest-mimic writes to standard
//! output on its own, so while the run lasts standard output is a pipe that a relay thread
//! reads: it clears the live line, writes libtest's complete lines, and draws the line again.
//! Where standard output is not a terminal (a lab log), a plain line goes to standard error
//! every [`PLAIN_EVERY`], only while cases are running.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a plain progress line is written to a log.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);
/// How often the live line is redrawn.
const LIVE_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
struct State {
    total: usize,
    done: usize,
    failed: usize,
    /// Case name → when it started; several under --test-threads.
    running: BTreeMap<String, Instant>,
    finished: bool,
}

pub struct Progress {
    state: Arc<(Mutex<State>, Condvar)>,
    /// The ticker thread and the relay, until `finish`.
    running: Mutex<Option<(JoinHandle<()>, Option<Relay>)>>,
}

struct Relay {
    /// The terminal, as standard output was before the pipe replaced it.
    terminal: OwnedFd,
    reader: JoinHandle<()>,
}

impl Progress {
    /// Starts showing progress of `total` cases: live on a terminal, plain lines otherwise.
    /// `quiet` (libtest's -q or a machine format) keeps the plain lines only.
    pub fn start(total: usize, live: bool) -> Progress {
        let state = Arc::new((
            Mutex::new(State {
                total,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let started = Instant::now();
        let relay = if live && std::io::stdout().is_terminal() {
            Relay::start(Arc::clone(&state), started)
        } else {
            None
        };
        let every = if relay.is_some() {
            LIVE_EVERY
        } else {
            PLAIN_EVERY
        };
        let terminal = relay
            .as_ref()
            .and_then(|r| r.terminal.try_clone().ok())
            .map(File::from);
        let ticker = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || tick(&state, started, every, terminal))
        };
        Progress {
            state,
            running: Mutex::new(Some((ticker, relay))),
        }
    }

    pub fn case_started(&self, case: &str) {
        if let Ok(mut s) = self.state.0.lock() {
            s.running.insert(case.to_string(), Instant::now());
        }
    }

    /// A case, with every repetition and retry, is done.
    pub fn case_finished(&self, case: &str, failed: bool) {
        if let Ok(mut s) = self.state.0.lock() {
            s.running.remove(case);
            s.done += 1;
            s.failed += usize::from(failed);
        }
    }

    /// Stops the ticker, gives standard output back, and clears the live line; once.
    pub fn finish(&self) {
        {
            let (lock, wake) = &*self.state;
            if let Ok(mut s) = lock.lock() {
                s.finished = true;
            }
            wake.notify_all();
        }
        let running = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some((ticker, relay)) = running {
            let _ = ticker.join();
            if let Some(relay) = relay {
                relay.stop();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Relay {
    fn start(state: Arc<(Mutex<State>, Condvar)>, started: Instant) -> Option<Relay> {
        let _ = std::io::stdout().flush();
        let terminal = nix::unistd::dup(std::io::stdout()).ok()?;
        let (read, write) = nix::unistd::pipe().ok()?;
        nix::unistd::dup2_stdout(&write).ok()?;
        drop(write);
        let mut out = File::from(terminal.try_clone().ok()?);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(File::from(read)).lines() {
                let Ok(line) = line else { break };
                let Ok(s) = state.0.lock() else { break };
                let _ = write!(out, "\r\x1b[2K{line}\n{}", status_line(&s, started));
                let _ = out.flush();
            }
        });
        Some(Relay { terminal, reader })
    }

    fn stop(self) {
        let _ = std::io::stdout().flush();
        // Standard output is the terminal again; the pipe's last writer is gone, so the
        // reader sees its end after the lines still in it.
        let _ = nix::unistd::dup2_stdout(&self.terminal);
        let _ = self.reader.join();
        let mut out = File::from(self.terminal);
        let _ = write!(out, "\r\x1b[2K");
        let _ = out.flush();
    }
}

fn tick(
    state: &(Mutex<State>, Condvar),
    started: Instant,
    every: Duration,
    mut terminal: Option<File>,
) {
    let (lock, wake) = state;
    let Ok(mut s) = lock.lock() else { return };
    loop {
        // `finish` may have come before this thread first waited.
        if s.finished {
            return;
        }
        let Ok((next, _)) = wake.wait_timeout(s, every) else {
            return;
        };
        s = next;
        if s.finished {
            return;
        }
        match terminal.as_mut() {
            Some(t) => {
                let _ = write!(t, "\r\x1b[2K{}", status_line(&s, started));
                let _ = t.flush();
            }
            None if !s.running.is_empty() => {
                eprintln!("svmconf: {}", status_line(&s, started));
            }
            None => {}
        }
    }
}

/// `12/105 done, 1 failed; running prefetch::partial::2MiB (3.2 s); about 40 s left`
fn status_line(s: &State, started: Instant) -> String {
    let mut line = format!("{}/{} done, {} failed", s.done, s.total, s.failed);
    let now = Instant::now();
    if let Some((case, since)) = s.running.iter().min_by_key(|(_, t)| **t) {
        line += &format!(
            "; running {case} ({:.1} s)",
            now.duration_since(*since).as_secs_f64()
        );
        if s.running.len() > 1 {
            line += &format!(" and {} more", s.running.len() - 1);
        }
    }
    if let Some(left) = estimate_left(s.done, s.total, now.duration_since(started)) {
        line += &format!("; about {} left", human(left));
    }
    line
}

/// The time left if the cases to come take as long as those done did on average.
fn estimate_left(done: usize, total: usize, elapsed: Duration) -> Option<Duration> {
    if done == 0 || done >= total {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=99 => format!("{s} s"),
        100..=5999 => format!("{} min", (s + 30) / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, 10, 5, None)]
    #[case(10, 10, 5, None)]
    #[case(5, 10, 10, Some(10))]
    #[case(1, 4, 2, Some(6))]
    fn estimates(
        #[case] done: usize,
        #[case] total: usize,
        #[case] elapsed_s: u64,
        #[case] want_s: Option<u64>,
    ) {
        let got = estimate_left(done, total, Duration::from_secs(elapsed_s));
        assert_eq!(got.map(|d| d.as_secs()), want_s);
    }

    #[rstest]
    #[case(42, "42 s")]
    #[case(150, "3 min")]
    #[case(7200, "2.0 h")]
    fn human_durations(#[case] s: u64, #[case] want: &str) {
        assert_eq!(human(Duration::from_secs(s)), want);
    }

    #[test]
    fn the_line_names_counts_the_oldest_running_case_and_the_rest() {
        let t0 = Instant::now();
        let mut s = State {
            total: 10,
            done: 5,
            failed: 1,
            ..State::default()
        };
        s.running.insert("b::x::4KiB".into(), t0);
        s.running
            .insert("a::y::4KiB".into(), t0 + Duration::from_millis(5));
        let line = status_line(&s, t0);
        assert!(
            line.starts_with("5/10 done, 1 failed; running b::x::4KiB ("),
            "{line}"
        );
        assert!(line.contains(" and 1 more"), "{line}");
    }

    #[test]
    fn counts_follow_the_cases() {
        let p = Progress::start(3, false);
        p.case_started("a");
        p.case_finished("a", true);
        p.case_started("b");
        {
            let s = p.state.0.lock().unwrap();
            assert_eq!((s.done, s.failed, s.running.len()), (1, 1, 1));
        }
        p.finish();
    }
}
