//! Campaign files: the spec and its validation live in `shared::campaign` (the ops API uses
//! them too).

pub use shared::campaign::*;
