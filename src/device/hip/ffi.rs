//! The HIP backend's own `unsafe` code: the HIP runtime's C functions and KFD's SMI ioctl. The
//! memory it allocates is a [`Memory`] of `device::memory`, which holds the libc calls that
//! make and change CPU mappings and the CPU's accesses to memory the GPU shares. Everything
//! here is exposed as safe functions and types whose invariants make each `unsafe` block
//! sound; each block says why in one line.
//!
//! Declarations are our own, not hip-sys's: hip-sys (0.1.2) generates its bindings from HIP
//! 5.4 with `hipError_t` as a Rust enum, and ROCm 6/7 return codes that enum lacks (911-916,
//! 1054), which is undefined behaviour when received as that enum. Here every status is a
//! `c_int` and every C enum argument an `int`, the C ABI of those enums on x86-64 and
//! aarch64. hip-sys provides the link to libamdhip64 (its build script finds ROCm) and the
//! opaque handle types. Each signature was checked against the ROCm 6.x and 7.x headers; the
//! README's hardware section lists them.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use hip_sys::hiprt::{hipEvent_t, hipFunction_t, hipModule_t, hipStream_t};

use super::error::{name_for, HipError, SUCCESS};
use crate::device::memory::{page_round, Memory};

extern "C" {
    fn hipInit(flags: c_uint) -> c_int;
    fn hipGetDeviceCount(count: *mut c_int) -> c_int;
    fn hipSetDevice(device: c_int) -> c_int;
    fn hipDeviceGetPCIBusId(pci_bus_id: *mut c_char, len: c_int, device: c_int) -> c_int;
    fn hipDeviceGetName(name: *mut c_char, len: c_int, device: c_int) -> c_int;
    fn hipDeviceGetAttribute(value: *mut c_int, attr: c_int, device: c_int) -> c_int;
    fn hipMemGetInfo(free: *mut usize, total: *mut usize) -> c_int;
    fn hipRuntimeGetVersion(version: *mut c_int) -> c_int;
    fn hipDriverGetVersion(version: *mut c_int) -> c_int;
    fn hipGetErrorName(status: c_int) -> *const c_char;
    fn hipGetErrorString(status: c_int) -> *const c_char;
    fn hipMallocManaged(ptr: *mut *mut c_void, size: usize, flags: c_uint) -> c_int;
    fn hipMalloc(ptr: *mut *mut c_void, size: usize) -> c_int;
    fn hipFree(ptr: *mut c_void) -> c_int;
    fn hipMemAdvise(ptr: *const c_void, count: usize, advice: c_int, device: c_int) -> c_int;
    fn hipMemPrefetchAsync(
        ptr: *const c_void,
        count: usize,
        device: c_int,
        stream: hipStream_t,
    ) -> c_int;
    fn hipMemRangeGetAttribute(
        data: *mut c_void,
        data_size: usize,
        attribute: c_int,
        ptr: *const c_void,
        count: usize,
    ) -> c_int;
    fn hipStreamCreateWithFlags(stream: *mut hipStream_t, flags: c_uint) -> c_int;
    fn hipStreamDestroy(stream: hipStream_t) -> c_int;
    fn hipStreamSynchronize(stream: hipStream_t) -> c_int;
    fn hipEventCreate(event: *mut hipEvent_t) -> c_int;
    fn hipEventRecord(event: hipEvent_t, stream: hipStream_t) -> c_int;
    fn hipEventSynchronize(event: hipEvent_t) -> c_int;
    fn hipEventElapsedTime(ms: *mut f32, start: hipEvent_t, stop: hipEvent_t) -> c_int;
    fn hipEventDestroy(event: hipEvent_t) -> c_int;
    fn hipModuleLoadData(module: *mut hipModule_t, image: *const c_void) -> c_int;
    fn hipModuleGetFunction(
        f: *mut hipFunction_t,
        module: hipModule_t,
        name: *const c_char,
    ) -> c_int;
    fn hipModuleUnload(module: hipModule_t) -> c_int;
    fn hipModuleLaunchKernel(
        f: hipFunction_t,
        grid_x: c_uint,
        grid_y: c_uint,
        grid_z: c_uint,
        block_x: c_uint,
        block_y: c_uint,
        block_z: c_uint,
        shared_bytes: c_uint,
        stream: hipStream_t,
        params: *mut *mut c_void,
        extra: *mut *mut c_void,
    ) -> c_int;
}

/// `hipMemAttachGlobal`: managed memory any stream on any device may access.
const MEM_ATTACH_GLOBAL: c_uint = 1;
/// `hipStreamNonBlocking`: the stream does not wait for the legacy null stream.
const STREAM_NON_BLOCKING: c_uint = 1;
/// `hipCpuDeviceId`: "the CPU" where HIP takes a device (advice, prefetch, range attributes).
pub const CPU_DEVICE: i32 = -1;

/// `hipMemoryAdvise` values (unchanged from HIP 5.4 to ROCm 7.x).
pub mod advice {
    pub const SET_READ_MOSTLY: i32 = 1;
    pub const SET_PREFERRED_LOCATION: i32 = 3;
    pub const UNSET_PREFERRED_LOCATION: i32 = 4;
    pub const SET_ACCESSED_BY: i32 = 5;
}

/// `hipMemRangeAttribute` values (unchanged from HIP 5.4 to ROCm 7.x).
pub mod range_attribute {
    pub const PREFERRED_LOCATION: i32 = 2;
    pub const LAST_PREFETCH_LOCATION: i32 = 4;
}

/// `hipDeviceAttribute_t` values svmconf reads (unchanged from HIP 5.4 to ROCm 7.x).
pub mod attribute {
    pub const MANAGED_MEMORY: i32 = 24;
    pub const PAGEABLE_MEMORY_ACCESS: i32 = 65;
}

/// A HIP status as a `Result`, the failure named by the runtime where it can.
fn check(call: &'static str, status: c_int) -> Result<(), HipError> {
    if status == SUCCESS {
        return Ok(());
    }
    let name = name_for(status, runtime_text(hipGetErrorName, status).as_deref());
    // Some runtimes answer hipGetErrorString with the name again; say it once.
    let text = runtime_text(hipGetErrorString, status)
        .filter(|t| *t != name)
        .unwrap_or_default();
    Err(HipError {
        call,
        code: status,
        name,
        text,
    })
}

/// The runtime's name or text for `status`.
fn runtime_text(f: unsafe extern "C" fn(c_int) -> *const c_char, status: c_int) -> Option<String> {
    // SAFETY: both functions take any int and return NULL or a static NUL-terminated string.
    let p = unsafe { f(status) };
    // SAFETY: a non-null result points at a static C string (checked for NULL here).
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// A C string the runtime wrote into `buf` (it may fill the buffer without a NUL).
fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn init() -> Result<(), HipError> {
    // SAFETY: hipInit takes flags by value (must be 0) and touches no memory of ours.
    check("hipInit", unsafe { hipInit(0) })
}

/// Devices HIP sees; `Err` with hipErrorNoDevice on a machine without one.
pub fn device_count() -> Result<i32, HipError> {
    let mut n: c_int = 0;
    // SAFETY: `n` is a valid, writable int for the call.
    check("hipGetDeviceCount", unsafe { hipGetDeviceCount(&mut n) })?;
    Ok(n)
}

/// Makes `device` the current device of the calling thread (allocations and streams follow).
pub fn set_device(device: i32) -> Result<(), HipError> {
    // SAFETY: by value; an invalid ordinal is reported as an error.
    check("hipSetDevice", unsafe { hipSetDevice(device) })
}

/// `0000:c1:00.0`.
pub fn pci_bus_id(device: i32) -> Result<String, HipError> {
    let mut buf = [0 as c_char; 64];
    // SAFETY: the runtime writes at most `len` bytes (snprintf) into our 64-byte buffer.
    check("hipDeviceGetPCIBusId", unsafe {
        hipDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as c_int, device)
    })?;
    Ok(c_string(&buf))
}

/// The marketing name: `AMD Instinct MI300X`.
pub fn device_name(device: i32) -> Result<String, HipError> {
    let mut buf = [0 as c_char; 256];
    // SAFETY: the runtime writes at most `len` bytes into our 256-byte buffer.
    check("hipDeviceGetName", unsafe {
        hipDeviceGetName(buf.as_mut_ptr(), buf.len() as c_int, device)
    })?;
    Ok(c_string(&buf))
}

/// An integer device attribute (`attribute::*`).
pub fn device_attribute(attr: i32, device: i32) -> Result<i32, HipError> {
    let mut v: c_int = 0;
    // SAFETY: `v` is a valid int; unknown attributes are reported as errors, not written.
    check("hipDeviceGetAttribute", unsafe {
        hipDeviceGetAttribute(&mut v, attr, device)
    })?;
    Ok(v)
}

/// (free, total) bytes of the current device's memory, as KFD accounts them.
pub fn mem_info() -> Result<(u64, u64), HipError> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: both are valid, writable size_t.
    check("hipMemGetInfo", unsafe {
        hipMemGetInfo(&mut free, &mut total)
    })?;
    Ok((free as u64, total as u64))
}

/// (runtime, driver) versions as HIP encodes them (`60443484`: 6.4.43484).
pub fn versions() -> Result<(i32, i32), HipError> {
    let (mut runtime, mut driver) = (0, 0);
    // SAFETY: valid, writable ints.
    check("hipRuntimeGetVersion", unsafe {
        hipRuntimeGetVersion(&mut runtime)
    })?;
    // SAFETY: as above.
    check("hipDriverGetVersion", unsafe {
        hipDriverGetVersion(&mut driver)
    })?;
    Ok((runtime, driver))
}

/// `hipDeviceProp_tR0600` (ROCm >= 6.0) as svmconf reads it: only `gcnArchName`, at byte
/// 1160 of a 1472-byte, 8-aligned struct. Offsets computed from the ROCm 6.x and 7.x headers'
/// field list and equal to LLVM's offload-arch (AMDGPUArchByHIP.cpp), which reads the same
/// field the same way. The struct is versioned: a layout change gets a new symbol (R0700).
#[repr(C, align(8))]
struct DevicePropR0600 {
    head: [u8; 1160],
    gcn_arch_name: [c_char; 256],
    tail: [u8; 56],
}

const _: () = assert!(std::mem::size_of::<DevicePropR0600>() == 1472);
const _: () = assert!(std::mem::offset_of!(DevicePropR0600, gcn_arch_name) == 1160);

type GetDevicePropertiesR0600 = unsafe extern "C" fn(*mut DevicePropR0600, c_int) -> c_int;

/// The device's target id (`gfx942:sramecc+:xnack+`) from `hipGetDevicePropertiesR0600`.
/// `Ok(None)` when the runtime has no such symbol (ROCm before 6.0): it is looked up at run
/// time, not linked, so that svmconf still builds and links against ROCm 5 (Debian's).
pub fn arch_name(device: i32) -> Result<Option<String>, HipError> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the symbol tables.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"hipGetDevicePropertiesR0600".as_ptr()) };
    if sym.is_null() {
        return Ok(None);
    }
    // SAFETY: the symbol is ROCm's `hipError_t hipGetDevicePropertiesR0600(hipDeviceProp_tR0600*,
    // int)`, which the declared type matches (int-sized status, pointer, int).
    let get: GetDevicePropertiesR0600 = unsafe { std::mem::transmute(sym) };
    let mut props = Box::new(DevicePropR0600 {
        head: [0; 1160],
        gcn_arch_name: [0; 256],
        tail: [0; 56],
    });
    // SAFETY: `props` is a writable buffer of the R0600 struct's full size and alignment.
    check("hipGetDevicePropertiesR0600", unsafe {
        get(&mut *props, device)
    })?;
    Ok(Some(c_string(&props.gcn_arch_name)))
}

/// A non-blocking stream of the current device; destroyed on drop.
pub struct Stream(hipStream_t);

// SAFETY: HIP streams may be used from any thread; the handle is an opaque pointer.
unsafe impl Send for Stream {}

impl Stream {
    pub fn new() -> Result<Stream, HipError> {
        let mut s: hipStream_t = std::ptr::null_mut();
        // SAFETY: `s` is a valid location for the new handle.
        check("hipStreamCreateWithFlags", unsafe {
            hipStreamCreateWithFlags(&mut s, STREAM_NON_BLOCKING)
        })?;
        Ok(Stream(s))
    }

    pub fn synchronize(&self) -> Result<(), HipError> {
        // SAFETY: the handle is live until drop.
        check("hipStreamSynchronize", unsafe {
            hipStreamSynchronize(self.0)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the handle is live and dropped once; work still queued finishes first.
        unsafe {
            hipStreamSynchronize(self.0);
            hipStreamDestroy(self.0);
        }
    }
}

/// A timing event; destroyed on drop.
pub struct Event(hipEvent_t);

// SAFETY: HIP events may be recorded, queried and destroyed from any thread.
unsafe impl Send for Event {}

impl Event {
    pub fn new() -> Result<Event, HipError> {
        let mut e: hipEvent_t = std::ptr::null_mut();
        // SAFETY: `e` is a valid location for the new handle.
        check("hipEventCreate", unsafe { hipEventCreate(&mut e) })?;
        Ok(Event(e))
    }

    pub fn record(&self, stream: &Stream) -> Result<(), HipError> {
        // SAFETY: both handles are live.
        check("hipEventRecord", unsafe {
            hipEventRecord(self.0, stream.0)
        })
    }

    pub fn synchronize(&self) -> Result<(), HipError> {
        // SAFETY: the handle is live.
        check("hipEventSynchronize", unsafe {
            hipEventSynchronize(self.0)
        })
    }

    /// Milliseconds between `self` (earlier) and `end`, both completed.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32, HipError> {
        let mut ms = 0f32;
        // SAFETY: both handles are live, `ms` is writable.
        check("hipEventElapsedTime", unsafe {
            hipEventElapsedTime(&mut ms, self.0, end.0)
        })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the handle is live and dropped once.
        unsafe { hipEventDestroy(self.0) };
    }
}

/// A loaded code object; unloaded on drop. Its functions borrow it.
pub struct Module(hipModule_t);

// SAFETY: modules may be used and unloaded from any thread.
unsafe impl Send for Module {}

/// A kernel of a [`Module`].
pub struct Function<'m> {
    handle: hipFunction_t,
    _module: std::marker::PhantomData<&'m Module>,
}

impl Module {
    /// Loads a code object (an ELF or a clang offload bundle) onto the current device.
    pub fn load(image: &[u8]) -> Result<Module, HipError> {
        let mut m: hipModule_t = std::ptr::null_mut();
        // SAFETY: `image` is a complete code object that outlives the call (HIP copies it).
        check("hipModuleLoadData", unsafe {
            hipModuleLoadData(&mut m, image.as_ptr().cast())
        })?;
        Ok(Module(m))
    }

    pub fn function(&self, name: &CStr) -> Result<Function<'_>, HipError> {
        let mut f: hipFunction_t = std::ptr::null_mut();
        // SAFETY: the module is live and `name` NUL-terminated.
        check("hipModuleGetFunction", unsafe {
            hipModuleGetFunction(&mut f, self.0, name.as_ptr())
        })?;
        Ok(Function {
            handle: f,
            _module: std::marker::PhantomData,
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: the handle is live, no Function outlives it (borrowck), dropped once.
        unsafe { hipModuleUnload(self.0) };
    }
}

/// One argument value, of its exact C size (see `args::Slot`).
pub use super::args::Slot;

/// Launches `f` on `grid` blocks of `block` threads with `args` on `stream`.
pub fn launch(
    f: &Function<'_>,
    grid: u32,
    block: u32,
    stream: &Stream,
    args: &mut [Slot],
) -> Result<(), HipError> {
    let mut params: Vec<*mut c_void> = args
        .iter_mut()
        .map(|slot| match slot {
            Slot::U64(v) => (v as *mut u64).cast(),
            Slot::U32(v) => (v as *mut u32).cast(),
        })
        .collect();
    // SAFETY: `params` holds one pointer per kernel parameter, each to a live value of the size
    // its signature declares (args::pack checked it); HIP copies them before returning.
    check("hipModuleLaunchKernel", unsafe {
        hipModuleLaunchKernel(
            f.handle,
            grid,
            1,
            1,
            block,
            1,
            1,
            0,
            stream.0,
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    })
}

/// hipMemAdvise over `[addr, addr + len)`; `device` is an ordinal or [`CPU_DEVICE`].
pub fn mem_advise(addr: u64, len: u64, advice: i32, device: i32) -> Result<(), HipError> {
    // SAFETY: HIP only records attributes for the range; it does not dereference it here and
    // reports a range it does not know as an error.
    check("hipMemAdvise", unsafe {
        hipMemAdvise(addr as *const c_void, len as usize, advice, device)
    })
}

/// hipMemPrefetchAsync of `[addr, addr + len)` to `device` (ordinal or [`CPU_DEVICE`]).
pub fn prefetch(addr: u64, len: u64, device: i32, stream: &Stream) -> Result<(), HipError> {
    // SAFETY: the range is one of our live allocations (the caller's bounds check); migrating
    // it moves pages, never our view of their contents.
    check("hipMemPrefetchAsync", unsafe {
        hipMemPrefetchAsync(addr as *const c_void, len as usize, device, stream.0)
    })
}

/// An int-valued range attribute (`range_attribute::*`): a device ordinal, [`CPU_DEVICE`], or
/// -2 (`hipInvalidDeviceId`) when the range has none or pages disagree.
pub fn range_attribute(attr: i32, addr: u64, len: u64) -> Result<i32, HipError> {
    let mut v: c_int = 0;
    // SAFETY: `v` is a writable int of the size passed; the range is only looked up.
    check("hipMemRangeGetAttribute", unsafe {
        hipMemRangeGetAttribute(
            (&mut v as *mut c_int).cast(),
            std::mem::size_of::<c_int>(),
            attr,
            addr as *const c_void,
            len as usize,
        )
    })?;
    Ok(v)
}

/// A HIP allocator that reported success with a null pointer.
fn null(call: &'static str) -> HipError {
    HipError {
        call,
        code: SUCCESS,
        name: "hipSuccess".into(),
        text: "but the pointer is null".into(),
    }
}

/// hipMallocManaged(len, hipMemAttachGlobal): memory the CPU and the GPU both access.
pub fn managed(len: u64) -> Result<Memory, HipError> {
    let mut p: *mut c_void = std::ptr::null_mut();
    // SAFETY: `p` is a valid location for the result.
    check("hipMallocManaged", unsafe {
        hipMallocManaged(&mut p, len as usize, MEM_ATTACH_GLOBAL)
    })?;
    let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| null("hipMallocManaged"))?;
    // SAFETY: the runtime gave us these pages alone (it allocates managed memory in whole
    // pages), a read-write CPU mapping of this process that may be unmapped or reprotected in
    // part (hipFree frees the range by its address); hip_free gives them back.
    Ok(unsafe { Memory::foreign(base, page_round(len), true, hip_free) })
}

/// hipMalloc(len): a VRAM buffer object, which the CPU cannot touch.
pub fn device_buffer(len: u64) -> Result<Memory, HipError> {
    let mut p: *mut c_void = std::ptr::null_mut();
    // SAFETY: `p` is a valid location for the result.
    check("hipMalloc", unsafe { hipMalloc(&mut p, len as usize) })?;
    let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| null("hipMalloc"))?;
    // SAFETY: the runtime gave us these `len` bytes alone; not host memory, so every CPU access
    // and mapping change is refused; hip_free gives them back.
    Ok(unsafe { Memory::foreign(base, len as usize, false, hip_free) })
}

/// Gives back memory of hipMallocManaged or hipMalloc; the error, if any, has nowhere to go.
///
/// # Safety
///
/// `p` came from one of them and is given back once, with no access after.
unsafe fn hip_free(p: NonNull<u8>) {
    // SAFETY: the caller's contract (Memory's drop, once per allocation).
    unsafe { hipFree(p.as_ptr().cast()) };
}

// --- KFD SMI events ------------------------------------------------------------------------------

fn os_error(call: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{call}: {e}"))
}

/// Opens an SMI event fd for the GPU with KFD id `gpu_id` through `kfd` (an open `/dev/kfd`),
/// and writes `mask` to it (kfd_smi_events.c: `kfd_smi_event_open()` then
/// `kfd_smi_ev_write()`). The fd never blocks on read: empty is `EAGAIN`.
pub fn kfd_smi_events(kfd: &File, gpu_id: u32, mask: [u8; 8]) -> std::io::Result<File> {
    use crate::device::amd::smi::{KfdIoctlSmiEventsArgs, AMDKFD_IOC_SMI_EVENTS};
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};

    let mut args = KfdIoctlSmiEventsArgs {
        gpuid: gpu_id,
        anon_fd: 0,
    };
    // SAFETY: `kfd` is an open fd; AMDKFD_IOC_SMI_EVENTS reads and writes exactly one
    // `struct kfd_ioctl_smi_events_args`, which `args` is (repr(C), two u32).
    let rc = unsafe {
        libc::ioctl(
            kfd.as_raw_fd(),
            AMDKFD_IOC_SMI_EVENTS as _,
            &mut args as *mut KfdIoctlSmiEventsArgs,
        )
    };
    if rc != 0 {
        return Err(os_error("ioctl(AMDKFD_IOC_SMI_EVENTS)"));
    }
    // SAFETY: on success the kernel installed a new fd in `anon_fd`, owned by no one else.
    let mut events = File::from(unsafe { OwnedFd::from_raw_fd(args.anon_fd as c_int) });
    // One write of exactly 8 bytes: the kernel refuses any other size with EINVAL.
    let n = events.write(&mask)?;
    if n != mask.len() {
        return Err(std::io::Error::other(format!(
            "the SMI fd took {n} of the mask's 8 bytes"
        )));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name table against the runtime svmconf is linked with: every code the runtime
    /// knows must have the runtime's name; codes newer than it are answered "hipErrorUnknown".
    #[test]
    fn the_name_table_agrees_with_the_linked_runtime() {
        // Codes whose meaning changed: the runtimes before ROCm 7 call 1054 their end marker.
        const RENAMED: &[(i32, &str)] = &[(1054, "hipErrorTbd")];
        let mut agreed = 0;
        for (code, name) in super::super::error::known() {
            let runtime = runtime_text(hipGetErrorName, code).unwrap_or_default();
            if (runtime == "hipErrorUnknown" && code != 999)
                || RENAMED.contains(&(code, runtime.as_str()))
            {
                continue;
            }
            assert_eq!(runtime, name, "hipError_t {code}");
            agreed += 1;
        }
        assert!(agreed > 50, "only {agreed} codes known to the runtime");
    }

    #[test]
    fn a_failed_call_is_named_by_the_runtime() {
        let e = check("hipMalloc", 2).unwrap_err();
        assert_eq!(
            (e.call, e.code, e.name.as_str()),
            ("hipMalloc", 2, "hipErrorOutOfMemory")
        );
        assert_ne!(e.text, e.name, "the text is not the name again");
        assert_eq!(check("hipInit", SUCCESS), Ok(()));
    }
}
