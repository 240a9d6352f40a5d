//! Kernel arguments as hipModuleLaunchKernel takes them: one value per parameter of
//! [`SIGNATURES`](crate::device::kernels::SIGNATURES), each of its C type's exact size, in declaration order.
//!
//! HIP copies each `kernelParams[i]` into the kernel argument segment using the size the code
//! object's metadata gives for argument `i`, so a value of the wrong size (a `uint32_t` passed
//! as 8 bytes, a swapped pair) launches without complaint and reads garbage. [`pack`] therefore
//! refuses any launch whose arguments do not match SIGNATURES by name and type, and
//! [`layout`] gives the offsets the compiler must have used, which CI compares with the code
//! objects' `.args` metadata.

use crate::device::kernels::{signature, Arg, Launch, Param};
use crate::device::Buf;

/// One packed argument: the bytes HIP copies, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A `uint64_t` or a device pointer (64-bit on every AMD GPU).
    U64(u64),
    /// A `uint32_t`.
    U32(u32),
}

impl Slot {
    pub fn size(self) -> usize {
        match self {
            Slot::U64(_) => 8,
            Slot::U32(_) => 4,
        }
    }
}

/// Why a launch could not be packed: a bug in svmconf (SIGNATURES and `Launch::args` out of
/// step) or a case (a span outside its allocation), never something to launch anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("kernel {0} is not in kernels::SIGNATURES")]
    NoSignature(&'static str),
    #[error("{symbol}: Launch::args gives {args} arguments, SIGNATURES has {params}")]
    Count {
        symbol: &'static str,
        args: usize,
        params: usize,
    },
    #[error("{symbol} argument {index} is `{arg}`, SIGNATURES has `{ty} {param}`")]
    Mismatch {
        symbol: &'static str,
        index: usize,
        arg: String,
        ty: &'static str,
        param: &'static str,
    },
    #[error("{symbol}: parameter type `{ty}` has no packing (only pointers, uint64_t, uint32_t)")]
    Type {
        symbol: &'static str,
        ty: &'static str,
    },
    #[error(
        "{symbol} argument {name}: offset {offset:#x} is outside allocation {buf} of {len} bytes"
    )]
    Outside {
        symbol: &'static str,
        name: &'static str,
        buf: u32,
        offset: u64,
        len: u64,
    },
    #[error("{symbol} argument {name}: allocation {buf} has no device address here")]
    NoAddress {
        symbol: &'static str,
        name: &'static str,
        buf: u32,
    },
}

/// How a parameter's C type is passed: `true` for 8 bytes, `false` for 4; `None` if svmconf
/// has no packing for it.
fn is_wide(ty: &str) -> Option<bool> {
    match ty {
        t if t.ends_with('*') => Some(true),
        "uint64_t" => Some(true),
        "uint32_t" => Some(false),
        _ => None,
    }
}

/// The arguments of `launch`, one slot per parameter of its signature. `address` gives an
/// allocation's device address (its base; the span offset is added here).
pub fn pack(launch: &Launch, address: impl Fn(Buf) -> Option<u64>) -> Result<Vec<Slot>, PackError> {
    let symbol = launch.symbol();
    let (_, params) = signature(symbol).ok_or(PackError::NoSignature(symbol))?;
    pack_with(symbol, &launch.args(), params, address)
}

/// [`pack`] against a given parameter list (the tests hand it wrong ones).
pub fn pack_with(
    symbol: &'static str,
    args: &[(&'static str, Arg)],
    params: &[Param],
    address: impl Fn(Buf) -> Option<u64>,
) -> Result<Vec<Slot>, PackError> {
    if args.len() != params.len() {
        return Err(PackError::Count {
            symbol,
            args: args.len(),
            params: params.len(),
        });
    }
    let mut slots = Vec::with_capacity(args.len());
    for (index, ((name, arg), param)) in args.iter().zip(params).enumerate() {
        let wide = is_wide(param.ty).ok_or(PackError::Type {
            symbol,
            ty: param.ty,
        })?;
        let mismatch = || PackError::Mismatch {
            symbol,
            index: index + 1,
            arg: format!("{name}: {arg:?}"),
            ty: param.ty,
            param: param.name,
        };
        if *name != param.name {
            return Err(mismatch());
        }
        let slot = match *arg {
            Arg::Ptr {
                buf,
                offset,
                mutable,
            } => {
                // A const parameter the kernel only reads takes a mutable pointer fine in C,
                // but SIGNATURES and Launch::args disagreeing means one of them is wrong.
                if !param.ty.ends_with('*') || mutable == param.ty.starts_with("const ") {
                    return Err(mismatch());
                }
                if offset > buf.len {
                    return Err(PackError::Outside {
                        symbol,
                        name,
                        buf: buf.id,
                        offset,
                        len: buf.len,
                    });
                }
                let base = address(buf).ok_or(PackError::NoAddress {
                    symbol,
                    name,
                    buf: buf.id,
                })?;
                Slot::U64(base + offset)
            }
            Arg::U64(v) if param.ty == "uint64_t" => Slot::U64(v),
            Arg::U32(v) if param.ty == "uint32_t" => Slot::U32(v),
            _ => return Err(mismatch()),
        };
        debug_assert_eq!(slot.size() == 8, wide);
        slots.push(slot);
    }
    Ok(slots)
}

/// One explicit argument in the kernel argument segment: where the compiler puts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgLayout {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// The offsets of `params` in the kernel argument segment: each argument at the next multiple
/// of its own size (natural alignment), as the AMDGPU ABI lays out by-value scalars and
/// pointers. `None` for a type svmconf cannot pass.
pub fn layout(params: &[Param]) -> Option<Vec<ArgLayout>> {
    let mut offset: usize = 0;
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        let size = if is_wide(p.ty)? { 8 } else { 4 };
        offset = offset.next_multiple_of(size);
        out.push(ArgLayout {
            name: p.name,
            offset,
            size,
        });
        offset += size;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::kernels::SIGNATURES;
    use crate::device::{AllocKind, Span, PAGE_SIZE};

    fn buf(id: u32, len: u64) -> Buf {
        Buf {
            id,
            kind: AllocKind::Managed,
            len,
        }
    }

    fn addresses(b: Buf) -> Option<u64> {
        Some(0x7f00_0000_0000 + u64::from(b.id) * 0x1000_0000)
    }

    #[test]
    fn verify_packs_pointers_words_and_the_generation_at_their_sizes() {
        let launch = Launch::Verify {
            buf: buf(1, 1 << 20),
            span: Span::new(PAGE_SIZE, 2 * PAGE_SIZE),
            seed: 0x5eed,
            generation: 7,
            result: buf(2, 16),
        };
        assert_eq!(
            pack(&launch, addresses).unwrap(),
            vec![
                Slot::U64(0x7f00_1000_0000 + PAGE_SIZE),
                Slot::U64(2 * PAGE_SIZE / 4),
                Slot::U64(PAGE_SIZE / 4),
                Slot::U64(0x5eed),
                Slot::U32(7),
                Slot::U64(0x7f00_2000_0000),
            ]
        );
    }

    #[test]
    fn every_launch_packs_to_its_signature_sizes() {
        let b = buf(1, 1 << 24);
        let span = Span::pages(1, 4);
        let launches = [
            Launch::Fill {
                buf: b,
                span,
                seed: 1,
                generation: 2,
            },
            Launch::Verify {
                buf: b,
                span,
                seed: 1,
                generation: 2,
                result: buf(2, 16),
            },
            Launch::TouchRead {
                buf: b,
                span,
                stride_pages: 2,
                sum: buf(2, 8),
            },
            Launch::TouchWrite {
                buf: b,
                span,
                stride_pages: 2,
                seed: 1,
                generation: 2,
            },
            Launch::FaultStorm {
                buf: b,
                span,
                step: 3,
                offset: 1,
                seed: 1,
                generation: 2,
            },
            Launch::AtomicInc {
                buf: b,
                span,
                iterations: 9,
            },
            Launch::Copy {
                dst: b,
                dst_span: span,
                src: buf(2, 1 << 20),
                src_span: span,
            },
        ];
        assert_eq!(launches.len(), SIGNATURES.len());
        for l in &launches {
            let (_, params) = signature(l.symbol()).unwrap();
            let sizes: Vec<usize> = pack(l, addresses)
                .unwrap()
                .iter()
                .map(|s| s.size())
                .collect();
            let want: Vec<usize> = layout(params).unwrap().iter().map(|a| a.size).collect();
            assert_eq!(sizes, want, "{}", l.symbol());
        }
    }

    const FILL: &[Param] = &[
        Param {
            ty: "uint32_t*",
            name: "buf",
        },
        Param {
            ty: "uint64_t",
            name: "nwords",
        },
        Param {
            ty: "uint32_t",
            name: "generation",
        },
    ];

    fn fill_args(generation: Arg) -> Vec<(&'static str, Arg)> {
        vec![
            (
                "buf",
                Arg::Ptr {
                    buf: buf(1, 4096),
                    offset: 0,
                    mutable: true,
                },
            ),
            ("nwords", Arg::U64(1024)),
            ("generation", generation),
        ]
    }

    #[test]
    fn a_value_of_the_wrong_width_is_refused() {
        let e = pack_with("svm_fill", &fill_args(Arg::U64(3)), FILL, addresses).unwrap_err();
        assert_eq!(
            e.to_string(),
            "svm_fill argument 3 is `generation: U64(3)`, SIGNATURES has `uint32_t generation`"
        );
    }

    #[test]
    fn swapped_names_a_missing_argument_and_constness_are_refused() {
        let mut swapped = fill_args(Arg::U32(3));
        swapped.swap(1, 2);
        assert!(matches!(
            pack_with("svm_fill", &swapped, FILL, addresses),
            Err(PackError::Mismatch { index: 2, .. })
        ));
        let short = &fill_args(Arg::U32(3))[..2];
        assert_eq!(
            pack_with("svm_fill", short, FILL, addresses),
            Err(PackError::Count {
                symbol: "svm_fill",
                args: 2,
                params: 3
            })
        );
        let mut readonly = fill_args(Arg::U32(3));
        readonly[0].1 = Arg::Ptr {
            buf: buf(1, 4096),
            offset: 0,
            mutable: false,
        };
        assert!(matches!(
            pack_with("svm_fill", &readonly, FILL, addresses),
            Err(PackError::Mismatch { index: 1, .. })
        ));
    }

    #[test]
    fn pointers_stay_inside_their_allocation_and_need_an_address() {
        let mut outside = fill_args(Arg::U32(3));
        outside[0].1 = Arg::Ptr {
            buf: buf(1, 4096),
            offset: 4097,
            mutable: true,
        };
        assert!(matches!(
            pack_with("svm_fill", &outside, FILL, addresses),
            Err(PackError::Outside { offset: 4097, .. })
        ));
        assert_eq!(
            pack_with("svm_fill", &fill_args(Arg::U32(3)), FILL, |_| None),
            Err(PackError::NoAddress {
                symbol: "svm_fill",
                name: "buf",
                buf: 1
            })
        );
        let odd = [Param {
            ty: "float",
            name: "x",
        }];
        assert!(matches!(
            pack_with("k", &[("x", Arg::U32(1))], &odd, addresses),
            Err(PackError::Type { ty: "float", .. })
        ));
    }

    #[test]
    fn the_layout_aligns_each_argument_to_its_size() {
        let (_, verify) = signature("svm_verify").unwrap();
        let offsets: Vec<(usize, usize)> = layout(verify)
            .unwrap()
            .iter()
            .map(|a| (a.offset, a.size))
            .collect();
        // generation (4 bytes at 32) leaves a hole before result (8 bytes at 40).
        assert_eq!(
            offsets,
            vec![(0, 8), (8, 8), (16, 8), (24, 8), (32, 4), (40, 8)]
        );
        let (_, atomic) = signature("svm_atomic_inc").unwrap();
        let last = *layout(atomic).unwrap().last().unwrap();
        assert_eq!((last.name, last.offset, last.size), ("iterations", 16, 4));
    }
}
