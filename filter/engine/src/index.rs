//! PLACEHOLDER
pub struct Index;
