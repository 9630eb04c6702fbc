//! The xDS protocol layer.
