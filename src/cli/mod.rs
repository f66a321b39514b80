//! The `coven` command line: the client side of the daemon, a client of the
//! socket like any other. Nothing here is linked into the daemon's loop;
//! the daemon's modules never call into it.
//!
//! `args` turns argv into an `Invocation`; `commands` runs the one-shot
//! commands; `attach` wires a terminal to a session; `client` is the small
//! blocking HTTP client they all use.

pub mod args;
pub mod attach;
pub mod client;
pub mod commands;

pub use args::{parse, Command, Invocation, RunArgs, USAGE};
pub use commands::{lifecycle, run};
