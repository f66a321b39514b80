//! The Coven daemon as a library: the binary, the tests, the benches and the
//! fuzz targets all drive this same code. See ARCHITECTURE.md for the map.

pub mod api;
pub mod cli;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod handover;
pub mod home;
pub mod http;
pub mod index;
pub mod journal;
pub mod logger;
pub mod on_loop;
pub mod reactor;
pub mod ring;
pub mod session;
pub mod supervisor;
pub mod sys;
pub mod writer;
