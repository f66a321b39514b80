//! The `coven` command line: the client side of the daemon, a client of the
//! socket like any other. Nothing here is linked into the daemon's loop;
//! the daemon's modules never call into it.
//!
//! `table` lists every command and option once; `args` turns argv into an
//! `Invocation` by it, and `docs` makes the help, the completions and the
//! man page from it. `commands` runs the one-shot commands, `attach` wires
//! a terminal to a session, `service` installs the daemon as a service,
//! `keys` names the keys `input` sends, `report` prints what failed, and
//! `client` is the small blocking HTTP client they all use.

pub mod args;
pub mod attach;
pub mod client;
pub mod commands;
pub mod docs;
pub mod keys;
pub mod report;
pub mod service;
pub mod table;

pub use args::{parse, Command, Invocation, RunArgs, UsageError};
pub use commands::{lifecycle, run};
