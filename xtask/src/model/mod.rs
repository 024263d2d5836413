//! What the tool reasons about, as data: the platforms, the distribution and its variants, the
//! smoke checks, the lock, and what binaries need of the system they run on.

pub mod distribution;
pub mod lock;
pub mod platform;
pub mod smoke;
pub mod system;
