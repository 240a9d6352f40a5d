//! The `svmconf` binary: the whole conformance suite behind a libtest-style command line.

fn main() {}
