//! `sim`: the reference device. (Being built.)
