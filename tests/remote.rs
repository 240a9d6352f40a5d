//! A device in a second process, as `spawn_process` makes one on GPUs: the real binary in
//! `--device-server` mode (here on the reference device), driven through `RemoteDevice`. What a
//! case sees of it: the data its kernels write, and how the process ended.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use svmconf::device::kernels::Launch;
use svmconf::device::remote::RemoteDevice;
use svmconf::device::{AllocKind, Device, ProcessExit};
use svmconf::model::pattern::Pattern;

const SEED: u64 = 0x5eed;

fn server(args: &[&str]) -> Result<RemoteDevice, svmconf::device::DeviceError> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    RemoteDevice::start(Path::new(env!("CARGO_BIN_EXE_svmconf")), &args)
}

fn sim_server() -> RemoteDevice {
    server(&["--backend", "sim", "--profile", "sim", "--seed", "3"]).expect("a sim device server")
}

fn pid(dev: &RemoteDevice) -> Pid {
    Pid::from_raw(dev.pid().expect("a server process") as i32)
}

#[test]
fn a_kernel_in_the_second_process_fills_what_the_parent_reads_back_until_it_is_killed() {
    let mut dev = sim_server();
    assert_eq!(dev.info().backend, "sim");
    let buf = dev.alloc(AllocKind::Managed, 2 << 20).expect("alloc");
    dev.launch(&Launch::Fill {
        buf,
        span: buf.all(),
        seed: SEED,
        generation: 4,
    })
    .expect("fill");
    let mut words = vec![0u32; buf.all().words() as usize];
    dev.cpu_read(buf, buf.all(), &mut words).expect("cpu_read");
    if let Err(m) = Pattern::new(SEED, 4).check(buf.all().first_word(), &words) {
        panic!("the words the server's kernel wrote: {m}");
    }
    assert_eq!(
        dev.wait_exit(Duration::from_millis(50)).expect("wait_exit"),
        ProcessExit::StillRunning
    );

    kill(pid(&dev), Signal::SIGKILL).expect("SIGKILL to the server");
    assert_eq!(
        dev.wait_exit(Duration::from_secs(10)).expect("wait_exit"),
        ProcessExit::Signaled(9)
    );
    let e = dev
        .alloc(AllocKind::Managed, 4096)
        .expect_err("a request to a dead server");
    assert!(
        e.to_string().starts_with(
            "alloc in the second process: the device server was killed by signal 9 (SIGKILL)"
        ),
        "{e}"
    );
    // Again, at once: the same answer, no hang.
    let e = dev.free(buf).expect_err("a request to a dead server");
    assert!(e.to_string().contains("signal 9 (SIGKILL)"), "{e}");
}

#[test]
fn a_request_finds_out_by_itself_that_the_server_was_killed() {
    let mut dev = sim_server();
    kill(pid(&dev), Signal::SIGKILL).expect("SIGKILL to the server");
    let e = dev
        .alloc(AllocKind::Managed, 4096)
        .expect_err("a request to a dead server");
    assert!(
        e.to_string().contains("killed by signal 9 (SIGKILL)"),
        "{e}"
    );
    assert_eq!(
        dev.wait_exit(Duration::ZERO).expect("wait_exit"),
        ProcessExit::Signaled(9)
    );
}

#[test]
fn a_server_whose_input_ends_exits_0() {
    let mut dev = sim_server();
    dev.alloc(AllocKind::Malloc, 4096).expect("alloc");
    dev.close_input();
    assert_eq!(
        dev.wait_exit(Duration::from_secs(10)).expect("wait_exit"),
        ProcessExit::Exited(0)
    );
    let e = dev
        .vram_used()
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    assert_eq!(e, "none");
}

#[test]
fn dropping_the_device_ends_and_reaps_its_process() {
    let dev = sim_server();
    let pid = pid(&dev);
    let clock = Instant::now();
    drop(dev);
    assert!(
        clock.elapsed() < Duration::from_secs(3),
        "{:?}",
        clock.elapsed()
    );
    // Reaped: not even a zombie is left under that id.
    assert_eq!(kill(pid, None), Err(nix::errno::Errno::ESRCH));
}

#[test]
fn a_server_that_cannot_open_its_device_says_how_it_ended() {
    let e = server(&["--backend", "sim", "--profile", "no-such-profile"])
        .expect_err("no device to serve");
    let text = e.to_string();
    assert!(
        text.starts_with("info in the second process: the device server exited with status 2"),
        "{text}"
    );
    let e = server(&["--backend", "auto"]).expect_err("no backend named");
    assert!(e.to_string().contains("exited with status 2"), "{e}");
}
