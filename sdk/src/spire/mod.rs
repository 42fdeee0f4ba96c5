//! SPIRE's plugin protocol on top of [`crate::goplugin`]: serving Rust SPIRE plugins (the
//! counterpart of upstream's `pluginmain`) and loading SPIRE plugins as SPIRE's catalog does.
//! Facts: `../shared/PROTOCOL.md` §2.

pub mod catalog;
pub mod check;
pub mod plugin;
pub mod plugintest;
