//! [`RemoteDevice`]: a device driven in a second process, and [`serve`], the loop that process
//! runs. What `spawn_process` gives where the runtime cannot be forked (HIP): the same svmconf
//! binary, started with `--device-server`, opens its own device on the same GPU and answers
//! requests from this one, so the second process has its own address space, its own runtime
//! and its own fate when the GPU resets.
//!
//! The protocol: one JSON `Request` a line on the server's stdin, one JSON line back on its
//! stdout, `{"Ok": value}` or `{"Err": DeviceError}`, in order. Both ends are the same binary,
//! so there is no version to agree on. Words travel as hexadecimal text, 8 digits a word,
//! which is about as small as JSON lets them be. The server's stderr is the parent's, so what
//! it says lands in the case's output files.
//!
//! A server that died answers every later request with how it ended (exit status or signal),
//! never a hang or a panic; dropping the device closes its stdin, gives it a moment to exit on
//! its own, then kills and reaps it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{
    Advice, AllocKind, Buf, CpuThreads, Destructive, Device, DeviceError, DeviceInfo,
    EvictionTransient, Injected, KernelRun, Level, Location, MigrationEvent, Need, Pending,
    ProcessExit, Protection, Result, Span,
};
use crate::device::kernels::Launch;

/// The hidden command-line flag that turns svmconf into a device server.
pub const SERVER_FLAG: &str = "--device-server";

/// How long a dropped device's server may take to exit by itself after its stdin closed (a
/// HIP device synchronizes its stream and frees its memory first) before it is killed.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// How long a request that found the connection broken waits for the server to be reaped, so
/// the error can say how it ended.
const REAP_WAIT: Duration = Duration::from_secs(1);

/// One request to the server: the `Device` methods a second process is asked for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Info,
    Alloc {
        kind: AllocKind,
        len: u64,
    },
    Free {
        buf: Buf,
    },
    Unmap {
        buf: Buf,
        span: Span,
    },
    Remap {
        buf: Buf,
    },
    Protect {
        buf: Buf,
        prot: Protection,
    },
    Advise {
        buf: Buf,
        span: Span,
        advice: Advice,
    },
    Prefetch {
        buf: Buf,
        span: Span,
        to: Location,
    },
    LaunchAsync {
        launch: Launch,
    },
    Wait {
        pending: u64,
    },
    CpuRead {
        buf: Buf,
        span: Span,
    },
    CpuWrite {
        buf: Buf,
        span: Span,
        #[serde(with = "hex_words")]
        words: Vec<u32>,
    },
    CpuThreads {
        work: CpuThreads,
    },
    Residency {
        buf: Buf,
        span: Span,
    },
    TakeEvents,
    VramUsed,
    VramFree,
    EvictionTransient,
    MigrationTime,
    Levels,
    MarkHelper {
        buf: Buf,
    },
    Injected,
}

/// What `cpu_read` answers: its time and the words.
#[derive(Serialize, Deserialize)]
struct ReadBack {
    took: Duration,
    #[serde(with = "hex_words")]
    words: Vec<u32>,
}

/// The server's answer to one line.
type Reply = std::result::Result<Value, DeviceError>;

/// Serves `dev` to the [`RemoteDevice`] at the other end of `input` and `output` until `input`
/// ends. A line that is not a request is answered with an error, and serving goes on.
pub fn serve(
    dev: &mut dyn Device,
    input: impl Read,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in BufReader::new(input).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply: Reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => answer(dev, request),
            Err(e) => Err(DeviceError::Backend(format!(
                "the device server cannot read the request `{}`: {e}",
                line.chars().take(120).collect::<String>()
            ))),
        };
        let text = serde_json::to_string(&reply).unwrap_or_else(|e| {
            let e =
                DeviceError::Backend(format!("the device server cannot encode its answer: {e}"));
            serde_json::to_string(&Reply::Err(e)).unwrap_or_default()
        });
        output.write_all(text.as_bytes())?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// One request done on `dev`, its result as JSON.
fn answer(dev: &mut dyn Device, request: Request) -> Reply {
    fn json(v: impl Serialize) -> Reply {
        serde_json::to_value(v).map_err(|e| DeviceError::Backend(format!("encoding: {e}")))
    }
    match request {
        Request::Info => json(dev.info()),
        Request::Alloc { kind, len } => json(dev.alloc(kind, len)?),
        Request::Free { buf } => json(dev.free(buf)?),
        Request::Unmap { buf, span } => json(dev.unmap(buf, span)?),
        Request::Remap { buf } => json(dev.remap(buf)?),
        Request::Protect { buf, prot } => json(dev.protect(buf, prot)?),
        Request::Advise { buf, span, advice } => json(dev.advise(buf, span, advice)?),
        Request::Prefetch { buf, span, to } => json(dev.prefetch(buf, span, to)?),
        Request::LaunchAsync { launch } => json(dev.launch_async(&launch)?.0),
        Request::Wait { pending } => json(dev.wait(Pending(pending))?),
        Request::CpuRead { buf, span } => {
            let mut words = vec![0u32; span.words() as usize];
            let took = dev.cpu_read(buf, span, &mut words)?;
            json(ReadBack { took, words })
        }
        Request::CpuWrite { buf, span, words } => json(dev.cpu_write(buf, span, &words)?),
        Request::CpuThreads { work } => json(dev.cpu_threads(&work)?),
        Request::Residency { buf, span } => json(dev.residency(buf, span)),
        Request::TakeEvents => json(dev.take_events()),
        Request::VramUsed => json(dev.vram_used()),
        Request::VramFree => json(dev.vram_free()),
        Request::EvictionTransient => json(dev.eviction_transient()),
        Request::MigrationTime => json(dev.migration_time()),
        Request::Levels => json(dev.levels()),
        Request::MarkHelper { buf } => {
            dev.mark_helper(buf);
            json(())
        }
        Request::Injected => json(dev.injected()),
    }
}

/// A device in another process (or, in tests, behind any pair of pipes), driven by requests.
pub struct RemoteDevice {
    info: DeviceInfo,
    /// The server's stdin; `None` once closed.
    to: Option<Box<dyn Write + Send>>,
    from: Box<dyn BufRead + Send>,
    /// The server process; `None` for a server that is not one (tests).
    child: Option<Child>,
    /// How the server process ended, once known.
    ended: Option<ExitStatus>,
    /// Why no request can be sent any more, once the connection broke.
    broken: Option<String>,
}

impl std::fmt::Debug for RemoteDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDevice")
            .field("info", &self.info.name)
            .field("pid", &self.pid())
            .field("ended", &self.ended)
            .finish()
    }
}

impl RemoteDevice {
    /// This same binary as a device server with `args` (after `--device-server`).
    pub fn spawn(args: &[String]) -> Result<RemoteDevice> {
        let exe = std::env::current_exe().map_err(|e| {
            DeviceError::Backend(format!(
                "a second process needs this program's path to start it again: {e}"
            ))
        })?;
        RemoteDevice::start(&exe, args)
    }

    /// `program --device-server args...`, with its stdin and stdout as the connection and its
    /// stderr this process's.
    pub fn start(program: &Path, args: &[String]) -> Result<RemoteDevice> {
        let shown = format!("{} {SERVER_FLAG} {}", program.display(), args.join(" "));
        let mut child = Command::new(program)
            .arg(SERVER_FLAG)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| DeviceError::Backend(format!("starting `{shown}`: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(DeviceError::Backend(format!(
                "`{shown}` was started without pipes"
            )));
        };
        let mut dev = RemoteDevice::over(stdin, stdout);
        dev.child = Some(child);
        dev.handshake()?;
        Ok(dev)
    }

    /// A device served at the other end of `to` and `from` ([`serve`] in a thread).
    pub fn connect(
        to: impl Write + Send + 'static,
        from: impl Read + Send + 'static,
    ) -> Result<RemoteDevice> {
        let mut dev = RemoteDevice::over(to, from);
        dev.handshake()?;
        Ok(dev)
    }

    fn over(to: impl Write + Send + 'static, from: impl Read + Send + 'static) -> RemoteDevice {
        RemoteDevice {
            info: DeviceInfo {
                backend: String::new(),
                name: "a device server not yet answering".into(),
                arch: String::new(),
                vram_bytes: 0,
                gpus: 0,
                caps: Default::default(),
            },
            to: Some(Box::new(std::io::BufWriter::new(to))),
            from: Box::new(BufReader::new(from)),
            child: None,
            ended: None,
            broken: None,
        }
    }

    /// Asks what the device is: the server opened it, or says why not by ending.
    fn handshake(&mut self) -> Result<()> {
        let mut info: DeviceInfo = self.call(&Request::Info)?;
        // What this proxy does not pass on: a process of a process, and the reset (the runner's
        // own device resets the GPU).
        for need in [Need::Fork, Need::Processes, Need::Reset] {
            info.caps.set(need, false);
        }
        self.info = info;
        Ok(())
    }

    /// The server's process id, where it is a process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Closes the server's stdin: a live server ends its loop and exits 0.
    pub fn close_input(&mut self) {
        self.to = None;
        if self.broken.is_none() {
            self.broken = Some("its input was closed".into());
        }
    }

    /// Sends one request and reads its answer as `T`.
    fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T> {
        let op = op_name(request);
        if let Some(why) = &self.broken {
            return Err(DeviceError::Backend(format!(
                "{op} in the second process: {why}"
            )));
        }
        let line = serde_json::to_string(request).map_err(|e| {
            DeviceError::Backend(format!("encoding {op} for the second process: {e}"))
        })?;
        let sent = match self.to.as_mut() {
            Some(to) => to
                .write_all(line.as_bytes())
                .and_then(|()| to.write_all(b"\n"))
                .and_then(|()| to.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = sent {
            return Err(self.lost(op, &format!("sending the request failed ({e})")));
        }
        let mut answer = String::new();
        match self.from.read_line(&mut answer) {
            Ok(0) => return Err(self.lost(op, "it closed its output before answering")),
            Err(e) => return Err(self.lost(op, &format!("reading its answer failed ({e})"))),
            Ok(_) => {}
        }
        let reply: Reply = serde_json::from_str(&answer).map_err(|e| {
            DeviceError::Backend(format!(
                "{op} in the second process: its answer `{}` is not a reply: {e}",
                answer.trim_end().chars().take(120).collect::<String>()
            ))
        })?;
        serde_json::from_value(reply?).map_err(|e| {
            DeviceError::Backend(format!(
                "{op} in the second process: its answer has the wrong shape: {e}"
            ))
        })
    }

    /// The connection broke during `op`: the error, saying how the server ended where it did.
    fn lost(&mut self, op: &str, what: &str) -> DeviceError {
        self.to = None;
        let why = match self.reap(REAP_WAIT) {
            Some(status) => format!("the device server {}", ended_text(status)),
            None if self.child.is_some() => format!(
                "the device server (pid {}) broke the connection and is still running",
                self.pid().unwrap_or_default()
            ),
            None => "the device server broke the connection".into(),
        };
        let why = format!("{why}: {what}");
        self.broken = Some(why.clone());
        DeviceError::Backend(format!("{op} in the second process: {why}"))
    }

    /// Waits up to `limit` for the server process to end; its status when it has.
    fn reap(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.ended.is_some() {
            return self.ended;
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.ended = Some(status);
                    return self.ended;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn not_here(what: &'static str) -> DeviceError {
        DeviceError::NotSupported(what)
    }
}

impl Drop for RemoteDevice {
    fn drop(&mut self) {
        self.to = None;
        if self.reap(EXIT_GRACE).is_none() {
            if let Some(child) = self.child.as_mut() {
                // Nothing to report to here: the process is ended whatever it was doing.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// How a process ended, in words: "exited with status 3", "was killed by signal 9 (SIGKILL)".
fn ended_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("was killed by signal {sig} ({s})"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        (None, None) => format!("ended ({status})"),
    }
}

fn op_name(request: &Request) -> &'static str {
    match request {
        Request::Info => "info",
        Request::Alloc { .. } => "alloc",
        Request::Free { .. } => "free",
        Request::Unmap { .. } => "unmap",
        Request::Remap { .. } => "remap",
        Request::Protect { .. } => "protect",
        Request::Advise { .. } => "advise",
        Request::Prefetch { .. } => "prefetch",
        Request::LaunchAsync { .. } => "launch",
        Request::Wait { .. } => "wait",
        Request::CpuRead { .. } => "cpu_read",
        Request::CpuWrite { .. } => "cpu_write",
        Request::CpuThreads { .. } => "cpu_threads",
        Request::Residency { .. } => "residency",
        Request::TakeEvents => "take_events",
        Request::VramUsed => "vram_used",
        Request::VramFree => "vram_free",
        Request::EvictionTransient => "eviction_transient",
        Request::MigrationTime => "migration_time",
        Request::Levels => "levels",
        Request::MarkHelper { .. } => "mark_helper",
        Request::Injected => "injected",
    }
}

impl Device for RemoteDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&mut self, kind: AllocKind, len: u64) -> Result<Buf> {
        self.call(&Request::Alloc { kind, len })
    }

    fn free(&mut self, buf: Buf) -> Result<()> {
        self.call(&Request::Free { buf })
    }

    fn unmap(&mut self, buf: Buf, span: Span) -> Result<()> {
        self.call(&Request::Unmap { buf, span })
    }

    fn remap(&mut self, buf: Buf) -> Result<()> {
        self.call(&Request::Remap { buf })
    }

    fn protect(&mut self, buf: Buf, prot: Protection) -> Result<()> {
        self.call(&Request::Protect { buf, prot })
    }

    fn fork(&mut self) -> Result<Box<dyn Device>> {
        Err(Self::not_here("fork of a device in a second process"))
    }

    fn advise(&mut self, buf: Buf, span: Span, advice: Advice) -> Result<()> {
        self.call(&Request::Advise { buf, span, advice })
    }

    fn prefetch(&mut self, buf: Buf, span: Span, to: Location) -> Result<Duration> {
        self.call(&Request::Prefetch { buf, span, to })
    }

    fn launch_async(&mut self, launch: &Launch) -> Result<Pending> {
        let launch = launch.clone();
        self.call(&Request::LaunchAsync { launch }).map(Pending)
    }

    fn wait(&mut self, pending: Pending) -> Result<KernelRun> {
        self.call(&Request::Wait { pending: pending.0 })
    }

    fn cpu_read(&mut self, buf: Buf, span: Span, out: &mut [u32]) -> Result<Duration> {
        let read: ReadBack = self.call(&Request::CpuRead { buf, span })?;
        if read.words.len() != out.len() {
            return Err(DeviceError::Backend(format!(
                "cpu_read of {span} in the second process: {} words came back for {} asked",
                read.words.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&read.words);
        Ok(read.took)
    }

    fn cpu_write(&mut self, buf: Buf, span: Span, words: &[u32]) -> Result<Duration> {
        let words = words.to_vec();
        self.call(&Request::CpuWrite { buf, span, words })
    }

    fn cpu_threads(&mut self, work: &CpuThreads) -> Result<Duration> {
        let work = work.clone();
        self.call(&Request::CpuThreads { work })
    }

    fn residency(&mut self, buf: Buf, span: Span) -> Option<Result<Vec<Location>>> {
        if !self.info.caps.has(Need::Residency) {
            return None;
        }
        self.call(&Request::Residency { buf, span })
            .unwrap_or_else(|e| Some(Err(e)))
    }

    // The observations answer `None` when the server is gone: nothing can be seen of it then,
    // and the next request that acts says why.
    fn take_events(&mut self) -> Option<Vec<MigrationEvent>> {
        self.call(&Request::TakeEvents).ok().flatten()
    }

    fn vram_free(&mut self) -> Option<u64> {
        self.call(&Request::VramFree).ok().flatten()
    }

    fn vram_used(&mut self) -> Option<u64> {
        self.call(&Request::VramUsed).ok().flatten()
    }

    fn eviction_transient(&mut self) -> Option<EvictionTransient> {
        self.call(&Request::EvictionTransient).ok().flatten()
    }

    fn migration_time(&mut self) -> Option<Duration> {
        self.call(&Request::MigrationTime).ok().flatten()
    }

    fn levels(&mut self) -> Vec<Level> {
        self.call(&Request::Levels).unwrap_or_default()
    }

    // A server that is gone has no helper to leave alone and nothing injected to report.
    fn mark_helper(&mut self, buf: Buf) {
        let _: Result<()> = self.call(&Request::MarkHelper { buf });
    }

    fn injected(&mut self) -> Vec<Injected> {
        self.call(&Request::Injected).unwrap_or_default()
    }

    fn spawn_process(&mut self) -> Result<Box<dyn Device>> {
        Err(Self::not_here(
            "a process started from a device in a second process",
        ))
    }

    fn wait_exit(&mut self, limit: Duration) -> Result<ProcessExit> {
        if self.child.is_none() {
            return Err(Self::not_here(
                "waiting for the end of a device server that is not a process",
            ));
        }
        Ok(match self.reap(limit) {
            None => ProcessExit::StillRunning,
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => ProcessExit::Exited(code),
                (None, Some(sig)) => ProcessExit::Signaled(sig),
                (None, None) => ProcessExit::Exited(-1),
            },
        })
    }

    fn gpu_reset(&mut self, _permit: &Destructive) -> Result<()> {
        Err(Self::not_here(
            "a GPU reset from a device in a second process",
        ))
    }
}

/// A text of a device error as a `&'static str` again: the texts a server sends come from a
/// fixed set in its source (the same binary's), so keeping each once bounds what is kept.
pub(crate) fn intern<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<&'static str, D::Error> {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let text = String::deserialize(d)?;
    let mut texts = TEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = texts.get(text.as_str()) {
        return Ok(kept);
    }
    let kept: &'static str = Box::leak(text.into_boxed_str());
    texts.insert(kept);
    Ok(kept)
}

/// Words as hexadecimal text, 8 digits a word, most significant first.
mod hex_words {
    use super::*;

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub fn serialize<S: Serializer>(words: &[u32], s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(words.len() * 8);
        for w in words {
            for shift in (0..32).step_by(4).rev() {
                text.push(DIGITS[(w >> shift) as usize & 0xf] as char);
            }
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<u32>, D::Error> {
        let text = String::deserialize(d)?;
        parse(text.as_bytes()).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &[u8]) -> std::result::Result<Vec<u32>, String> {
        if text.len() % 8 != 0 {
            return Err(format!(
                "{} hexadecimal digits are not whole words of 8",
                text.len()
            ));
        }
        text.chunks_exact(8)
            .map(|chunk| {
                chunk.iter().try_fold(0u32, |w, &c| {
                    let digit = (c as char)
                        .to_digit(16)
                        .ok_or_else(|| format!("`{}` is not a hexadecimal digit", c as char))?;
                    Ok(w << 4 | digit)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::thread::JoinHandle;

    use super::*;
    use crate::device::sim::testutil::{self, MIB, SEED};
    use crate::device::Trigger;
    use crate::model::pattern::Pattern;

    /// A sim device served by [`serve`] on a thread, and the proxy that talks to it over a pair
    /// of pipes.
    fn served(dev: impl Device + 'static) -> (RemoteDevice, JoinHandle<std::io::Result<()>>) {
        let (to_server, server_in) = pipe();
        let (server_out, from_server) = pipe();
        let mut dev = dev;
        let server = std::thread::spawn(move || serve(&mut dev, server_in, server_out));
        let remote = RemoteDevice::connect(to_server, from_server).expect("the handshake");
        (remote, server)
    }

    /// (write end, read end).
    fn pipe() -> (File, File) {
        let (read, write) = nix::unistd::pipe().expect("a pipe");
        (File::from(write), File::from(read))
    }

    #[test]
    fn data_written_by_a_kernel_in_the_server_reads_back_through_the_proxy() {
        let (mut remote, _server) = served(testutil::device());
        assert_eq!(remote.info().backend, "sim");
        let caps = remote.info().caps;
        assert!(caps.has(Need::Residency) && !caps.has(Need::Processes));
        let buf = remote.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        assert_eq!((buf.kind, buf.len), (AllocKind::Managed, 2 * MIB));
        let run = remote
            .launch(&Launch::Fill {
                buf,
                span: buf.all(),
                seed: SEED,
                generation: 3,
            })
            .unwrap();
        assert!(run.elapsed > Duration::ZERO);
        let pages = remote.residency(buf, buf.all()).unwrap().unwrap();
        assert!(pages.iter().all(|l| *l == Location::Vram), "{pages:?}");
        let events = remote.take_events().unwrap();
        assert!(events.iter().any(|e| e.trigger == Trigger::GpuFault));
        assert!(remote.vram_used().unwrap() >= 2 * MIB);

        let mut words = vec![0u32; buf.all().words() as usize];
        remote.cpu_read(buf, buf.all(), &mut words).unwrap();
        Pattern::new(SEED, 3).check(0, &words).unwrap();
        // The CPU read migrated it back, in the server.
        let pages = remote.residency(buf, buf.all()).unwrap().unwrap();
        assert!(pages.iter().all(|l| *l == Location::System), "{pages:?}");
    }

    #[test]
    fn helpers_and_fault_counts_pass_through_the_proxy() {
        let text =
            "description: t\ncatches: [x]\nrules:\n  - kind: corrupt\n    trigger: prefetch\n";
        let plan =
            crate::device::sim::faults::Plan::parse(text, std::path::Path::new("t.yaml")).unwrap();
        let mut dev = testutil::device();
        dev.set_faults(plan, SEED, None);
        let (mut remote, _server) = served(dev);
        let helper = remote.alloc(AllocKind::Managed, 16).unwrap();
        remote.mark_helper(helper);
        remote
            .prefetch(helper, helper.all(), Location::Vram)
            .unwrap();
        let buf = remote.alloc(AllocKind::Managed, 2 * MIB).unwrap();
        remote.prefetch(buf, buf.all(), Location::Vram).unwrap();
        let injected = remote.injected();
        assert_eq!(injected.len(), 1);
        assert_eq!((injected[0].matched, injected[0].fired), (1, 1));
        assert_eq!(injected[0].kind, "corrupt");
    }

    #[test]
    fn cpu_writes_advice_and_prefetch_arrive_as_sent() {
        let (mut remote, _server) = served(testutil::device());
        let buf = remote.alloc(AllocKind::Malloc, 64 * 1024).unwrap();
        let span = Span::pages(2, 3);
        let mut sent = vec![0u32; span.words() as usize];
        Pattern::new(7, 1).fill(span.first_word(), &mut sent);
        sent[5] = u32::MAX;
        sent[6] = 0;
        remote.cpu_write(buf, span, &sent).unwrap();
        remote
            .advise(buf, buf.all(), Advice::PreferredLocation(Location::Vram))
            .unwrap();
        remote.prefetch(buf, span, Location::Vram).unwrap();
        assert_eq!(
            remote.residency(buf, Span::pages(1, 3)).unwrap().unwrap(),
            [Location::System, Location::Vram, Location::Vram]
        );
        let mut back = vec![1u32; span.words() as usize];
        remote.cpu_read(buf, span, &mut back).unwrap();
        assert_eq!(back, sent);
        assert!(remote.eviction_transient().is_some());
        remote.free(buf).unwrap();
    }

    #[test]
    fn the_servers_errors_come_back_as_the_same_kind() {
        let (mut remote, _server) = served(testutil::device());
        let e = remote.alloc(AllocKind::DeviceBuffer, 1 << 40).unwrap_err();
        assert!(
            matches!(e, DeviceError::OutOfMemory { bytes, .. } if bytes == 1 << 40),
            "{e:?}"
        );
        let gone = Buf {
            id: 99,
            kind: AllocKind::Managed,
            len: 4096,
        };
        assert_eq!(
            remote.free(gone).unwrap_err(),
            DeviceError::NoSuchBuffer(99)
        );
        let buf = remote.alloc(AllocKind::Managed, 4096).unwrap();
        let e = remote
            .cpu_write(buf, Span::pages(1, 1), &[0; 1024])
            .unwrap_err();
        assert!(
            matches!(e, DeviceError::OutOfBounds { buf: b, .. } if b == buf.id),
            "{e:?}"
        );
        remote.unmap(buf, buf.all()).unwrap();
        let e = remote.cpu_read(buf, buf.all(), &mut [0; 1024]).unwrap_err();
        assert!(
            matches!(e, DeviceError::Segfault { buf: b, offset: 0 } if b == buf.id),
            "{e:?}"
        );
        let vram = remote.alloc(AllocKind::DeviceBuffer, 4096).unwrap();
        let e = remote
            .advise(vram, vram.all(), Advice::AccessedBy)
            .unwrap_err();
        assert!(matches!(e, DeviceError::Unsupported { .. }), "{e:?}");
    }

    #[test]
    fn what_the_server_cannot_do_there_says_so() {
        let (mut remote, _server) = served(testutil::device());
        for e in [
            remote.fork().err(),
            remote.spawn_process().err(),
            remote.gpu_reset(&Destructive(())).err(),
            remote.wait_exit(Duration::ZERO).err(),
        ] {
            let e = e.expect("refused");
            assert!(matches!(e, DeviceError::NotSupported(_)), "{e:?}");
        }
    }

    #[test]
    fn a_server_that_went_away_gives_an_error_per_request_not_a_hang() {
        let (to_server, server_in) = pipe();
        let (mut server_out, from_server) = pipe();
        // A server that answers the handshake only, then ends and closes both pipes.
        let server = std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(server_in).read_line(&mut line)?;
            serve(&mut testutil::device(), line.as_bytes(), &mut server_out)
        });
        let mut remote = RemoteDevice::connect(to_server, from_server).expect("the handshake");
        server.join().expect("the server thread").expect("served");
        let e = remote.alloc(AllocKind::Managed, 4096).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("alloc in the second process: the device server broke the connection"),
            "{e}"
        );
        let e = remote
            .free(Buf {
                id: 1,
                kind: AllocKind::Managed,
                len: 4096,
            })
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("free in the second process: the device server broke"),
            "{e}"
        );
        assert_eq!(remote.take_events(), None);
    }

    #[test]
    fn a_closed_input_is_refused_before_anything_is_sent() {
        let (mut remote, server) = served(testutil::device());
        remote.close_input();
        // The server saw its input end (bounded: a proxy that kept it open would hang a join).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            server.is_finished(),
            "the server still serves a closed input"
        );
        let e = remote.vram_used();
        assert_eq!(e, None);
        let e = remote.alloc(AllocKind::Managed, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alloc in the second process: its input was closed"
        );
    }

    #[test]
    fn a_line_that_is_not_a_request_is_answered_and_serving_goes_on() {
        let mut dev = testutil::device();
        let input = b"{\"op\":\"teleport\"}\n\n{\"op\":\"vram_used\"}\n".as_slice();
        let mut output = Vec::new();
        serve(&mut dev, input, &mut output).unwrap();
        let lines: Vec<Reply> = String::from_utf8(output)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let e = lines[0].clone().unwrap_err().to_string();
        assert!(
            e.contains("cannot read the request") && e.contains("teleport"),
            "{e}"
        );
        assert_eq!(lines[1], Ok(serde_json::json!(0)));
    }

    #[test]
    fn device_errors_survive_the_wire_unchanged() {
        let errors = [
            DeviceError::OutOfMemory {
                what: "VRAM",
                bytes: 5,
            },
            DeviceError::Unsupported {
                op: "remap",
                kind: AllocKind::DeviceBuffer,
            },
            DeviceError::NotSupported("a GPU reset without a reset observer"),
            DeviceError::Segfault { buf: 1, offset: 8 },
            DeviceError::ProcessAborted,
            DeviceError::Timeout(Duration::from_millis(1500)),
            DeviceError::Backend("hipErrorIllegalAddress".into()),
        ];
        for e in errors {
            let text = serde_json::to_string(&e).unwrap();
            let back: DeviceError = serde_json::from_str(&text).unwrap();
            assert_eq!(back, e, "{text}");
        }
    }

    #[test]
    fn words_travel_as_eight_hex_digits_each() {
        #[derive(Serialize, Deserialize)]
        struct W(#[serde(with = "hex_words")] Vec<u32>);
        let text = serde_json::to_string(&W(vec![0, 0xdead_beef, 1])).unwrap();
        assert_eq!(text, "\"00000000deadbeef00000001\"");
        let W(back) = serde_json::from_str(&text).unwrap();
        assert_eq!(back, [0, 0xdead_beef, 1]);
        assert!(hex_words::parse(b"0000000").is_err());
        assert!(hex_words::parse(b"0000000g").is_err());
    }
}
