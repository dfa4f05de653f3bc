//! Raw YAML → validated `Config`. The only module that reads YAML.

pub mod duration;
pub mod model;

pub use model::*;
