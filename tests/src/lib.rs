//! End-to-end tests of real `totemd` processes (in `tests/`), and what they need to judge
//! a run with the spec: [`judge`] merges the `--trace-file` journals of every daemon of a
//! cluster into one spec trace, with the same mapping the cluster simulator uses.

pub mod judge;
