//! One case in a child process: the same binary with `NAME --exact`, in a process group of its
//! own, its output in files, under a timeout.
//!
//! The child writes its record to a verdict file and exits 0. Anything else is evidence: a
//! signal is a crash named by the signal, an exit without a verdict is a crash, and a child past
//! its limit gets a task dump (where the runner may ask for one), SIGTERM to its group, and
//! SIGKILL after the grace period. Whatever happens, the output files and their last lines stay.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::results::{CaseOutput, CaseRecord};

/// How much of each output stream a record keeps; the whole stream stays in its file.
pub const TAIL_BYTES: u64 = 4096;

/// What to run and where its output goes.
pub struct Spawn {
    pub exe: PathBuf,
    pub args: Vec<String>,
    /// The run folder; output paths in records are relative to it.
    pub run_dir: PathBuf,
    /// `output/<case>`: `.stdout`, `.stderr` and `.verdict.json` are added.
    pub stem: String,
    pub timeout: Duration,
    pub grace: Duration,
    /// Write `t` to /proc/sysrq-trigger on a timeout (hardware backends: the kernel's task dump
    /// shows where a GPU fault handler is stuck).
    pub sysrq: bool,
}

/// How the child ended.
#[derive(Debug)]
pub enum End {
    /// It ran the case and wrote its record.
    Verdict(Box<CaseRecord>),
    /// A signal the runner did not send.
    Signaled(Signal),
    /// It exited without a record.
    NoVerdict(Option<i32>),
    /// Its record could not be read.
    BadVerdict(String),
    /// It ran past its limit and was ended with `signal`.
    TimedOut {
        limit: Duration,
        signal: Signal,
        task_dump: Option<String>,
    },
    /// It could not be started.
    SpawnFailed(String),
}

impl End {
    /// The reason a record gives for this end; `None` for a verdict.
    pub fn reason(&self) -> Option<String> {
        Some(match self {
            End::Verdict(_) => return None,
            End::Signaled(s) => format!(
                "the case process was killed by {} (signal {})",
                s.as_str(),
                *s as i32
            ),
            End::NoVerdict(Some(code)) => format!(
                "the case process exited with status {code} without a verdict (it called exit, \
                 or the runner's child protocol broke)"
            ),
            End::NoVerdict(None) => "the case process ended without a verdict".to_string(),
            End::BadVerdict(why) => format!("the case process left an unreadable verdict: {why}"),
            End::TimedOut {
                limit,
                signal,
                task_dump,
            } => {
                let mut s = format!(
                    "timed out after {:.1} s; the case process group was ended with {}",
                    limit.as_secs_f64(),
                    signal.as_str()
                );
                if let Some(d) = task_dump {
                    s += &format!("; {d}");
                }
                s
            }
            End::SpawnFailed(why) => format!("the case process could not be started: {why}"),
        })
    }
}

/// Runs the child to its end; the output files are left in place (the tests' way: the runner
/// uses [`run_reporting`]).
#[cfg(test)]
pub fn run(spawn: &Spawn) -> (End, CaseOutput) {
    run_reporting(spawn, &|_| {})
}

/// [`run`], telling `started` the child's pid as soon as it runs: what the kernel log names
/// the case by.
pub fn run_reporting(spawn: &Spawn, started: &dyn Fn(u32)) -> (End, CaseOutput) {
    let out_dir = spawn.run_dir.join(OUTPUT_DIR);
    let stdout_rel = format!("{OUTPUT_DIR}/{}.stdout", spawn.stem);
    let stderr_rel = format!("{OUTPUT_DIR}/{}.stderr", spawn.stem);
    let verdict = out_dir.join(format!("{}.verdict.json", spawn.stem));
    let mut output = CaseOutput {
        stdout_file: stdout_rel.clone(),
        stderr_file: stderr_rel.clone(),
        ..CaseOutput::default()
    };
    let end = match start_and_wait(spawn, &out_dir, &stdout_rel, &stderr_rel, &verdict, started) {
        Ok(end) => end,
        Err(e) => End::SpawnFailed(e),
    };
    for (rel, bytes, tail) in [
        (
            &stdout_rel,
            &mut output.stdout_bytes,
            &mut output.stdout_tail,
        ),
        (
            &stderr_rel,
            &mut output.stderr_bytes,
            &mut output.stderr_tail,
        ),
    ] {
        if let Ok((len, t)) = read_tail(&spawn.run_dir.join(rel), TAIL_BYTES) {
            *bytes = len;
            *tail = t;
        }
    }
    let _ = std::fs::remove_file(&verdict);
    (end, output)
}

/// The folder of a run where case processes' output goes.
pub const OUTPUT_DIR: &str = "output";

fn start_and_wait(
    spawn: &Spawn,
    out_dir: &Path,
    stdout_rel: &str,
    stderr_rel: &str,
    verdict: &Path,
    started: &dyn Fn(u32),
) -> Result<End, String> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", out_dir.display()))?;
    let create = |rel: &str| {
        let path = spawn.run_dir.join(rel);
        File::create(&path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))
    };
    let (stdout, stderr) = (create(stdout_rel)?, create(stderr_rel)?);
    let _ = std::fs::remove_file(verdict);
    let mut child = Command::new(&spawn.exe)
        .args(&spawn.args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // A group of its own: a timeout ends the case and whatever it started, and a ^C at the
        // terminal reaches the runner, which decides.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("`{}`: {e}", spawn.exe.display()))?;
    let pgid = Pid::from_raw(child.id() as i32);
    super::interrupt::running(pgid.as_raw());
    // Whatever way this ends, an interrupt no longer needs to end this group.
    struct Ended(i32);
    impl Drop for Ended {
        fn drop(&mut self) {
            super::interrupt::ended(self.0);
        }
    }
    let _ended = Ended(pgid.as_raw());
    started(child.id());
    let started = Instant::now();

    // The wait happens on a thread so that this one can keep time without polling.
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(spawn.timeout) {
        Ok(status) => status,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err("the case process could not be waited for".into())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let task_dump = spawn.sysrq.then(request_task_dump);
            let _ = killpg(pgid, Signal::SIGTERM);
            let signal = match rx.recv_timeout(spawn.grace) {
                Ok(_) => Signal::SIGTERM,
                Err(_) => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    let _ = rx.recv();
                    Signal::SIGKILL
                }
            };
            // Whatever the case left in its group goes too.
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = waiter.join();
            return Ok(End::TimedOut {
                limit: started.elapsed().min(spawn.timeout),
                signal,
                task_dump,
            });
        }
    };
    let _ = waiter.join();
    // A case's helpers (a forked holder, say) must not outlive it.
    let _ = killpg(pgid, Signal::SIGKILL);
    let status = status.map_err(|e| format!("waiting for the case process: {e}"))?;
    Ok(judge(status, verdict))
}

fn judge(status: ExitStatus, verdict: &Path) -> End {
    if let Some(sig) = status.signal() {
        return match Signal::try_from(sig) {
            Ok(s) => End::Signaled(s),
            Err(_) => End::NoVerdict(None),
        };
    }
    match std::fs::read(verdict) {
        Ok(bytes) => match serde_json::from_slice::<CaseRecord>(&bytes) {
            Ok(r) if status.success() => End::Verdict(Box::new(r)),
            Ok(_) => End::NoVerdict(status.code()),
            Err(e) => End::BadVerdict(format!("`{}`: {e}", verdict.display())),
        },
        Err(_) => End::NoVerdict(status.code()),
    }
}

/// Asks the kernel to log every task's state (sysrq `t`), where the runner may; says what it did.
fn request_task_dump() -> String {
    match std::fs::write("/proc/sysrq-trigger", b"t") {
        Ok(()) => "the kernel's task dump (sysrq t) is in the kernel log".to_string(),
        Err(e) => format!(
            "no task dump: /proc/sysrq-trigger: {}",
            crate::util::text::io_reason(&e)
        ),
    }
}

/// The size of a file and its last `max` bytes as text, starting at a line where it can.
pub fn read_tail(path: &Path, max: u64) -> io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity((len - from) as usize);
    f.read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if from > 0 {
        if let Some(nl) = text.find('\n') {
            text.drain(..=nl);
        }
    }
    Ok((len, text))
}

/// A case name as a file name: `prefetch::partial::2MiB` → `prefetch.partial.2MiB`.
pub fn file_stem(case: &str) -> String {
    case.replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Runs a shell script as the case; `$V` in it is the verdict file's path.
    fn sh(script: &str, timeout_ms: u64) -> (End, CaseOutput, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let verdict = dir.path().join("output/t.verdict.json");
        let script = script.replace("$V", verdict.to_str().unwrap());
        let spawn = Spawn {
            exe: "/bin/sh".into(),
            args: vec!["-c".into(), script],
            run_dir: dir.path().to_path_buf(),
            stem: "t".into(),
            timeout: Duration::from_millis(timeout_ms),
            grace: Duration::from_millis(300),
            sysrq: false,
        };
        let (end, out) = run(&spawn);
        (end, out, dir)
    }

    #[test]
    fn a_verdict_is_read_back() {
        let record = serde_json::to_string(&CaseRecord {
            case: "a::b::4KiB".into(),
            ..CaseRecord::blank()
        })
        .unwrap();
        let (end, out, _dir) = sh(
            &format!("echo hello; echo oops >&2; echo '{record}' > $V"),
            5000,
        );
        assert!(matches!(end, End::Verdict(r) if r.case == "a::b::4KiB"));
        assert_eq!(
            (out.stdout_tail.as_str(), out.stderr_tail.as_str()),
            ("hello\n", "oops\n")
        );
        assert_eq!(out.stdout_file, "output/t.stdout");
    }

    #[rstest]
    #[case("kill -SEGV $$", "killed by SIGSEGV (signal 11)")]
    #[case("kill -ABRT $$", "killed by SIGABRT (signal 6)")]
    #[case("exit 3", "exited with status 3 without a verdict")]
    #[case("exit 0", "exited with status 0 without a verdict")]
    #[case("echo '{' > $V", "unreadable verdict")]
    fn every_other_end_is_named(#[case] script: &str, #[case] want: &str) {
        let (end, _, _dir) = sh(script, 5000);
        let why = end.reason().unwrap();
        assert!(why.contains(want), "{why}");
    }

    #[test]
    fn a_hang_gets_sigterm_and_its_output_is_kept() {
        let (end, out, _dir) = sh("echo started; exec sleep 30", 200);
        assert!(
            matches!(
                end,
                End::TimedOut {
                    signal: Signal::SIGTERM,
                    ..
                }
            ),
            "{end:?}"
        );
        assert!(end.reason().unwrap().starts_with("timed out after 0.2 s"));
        assert_eq!(out.stdout_tail, "started\n");
    }

    #[test]
    fn a_hang_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        let clock = Instant::now();
        let (end, _, _dir) = sh("trap '' TERM; while :; do sleep 0.05; done", 200);
        assert!(
            matches!(
                end,
                End::TimedOut {
                    signal: Signal::SIGKILL,
                    ..
                }
            ),
            "{end:?}"
        );
        assert!(clock.elapsed() >= Duration::from_millis(500));
    }

    #[test]
    fn a_missing_program_is_a_spawn_failure_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (end, _) = run(&Spawn {
            exe: dir.path().join("no-such-svmconf"),
            args: vec![],
            run_dir: dir.path().to_path_buf(),
            stem: "t".into(),
            timeout: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            sysrq: false,
        });
        let why = end.reason().unwrap();
        assert!(why.contains("no-such-svmconf"), "{why}");
    }

    #[test]
    fn tails_start_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "aaaa\nbbbb\ncc\n").unwrap();
        assert_eq!(read_tail(&path, 6).unwrap(), (13, "cc\n".to_string()));
        assert_eq!(read_tail(&path, 100).unwrap().1, "aaaa\nbbbb\ncc\n");
    }

    #[rstest]
    #[case("prefetch::partial::2MiB+4KiB", "prefetch.partial.2MiB+4KiB")]
    #[case("vma::fork cow/x", "vma.fork_cow_x")]
    fn file_stems(#[case] case: &str, #[case] want: &str) {
        assert_eq!(file_stem(case), want);
    }
}
