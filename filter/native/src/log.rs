//! Envoy's log (`[dynamic_modules]`), the module's only output.

use crate::abi::{self, LogLevel, ModuleBuffer};

fn log(level: LogLevel, message: &str) {
    // SAFETY: the buffer borrows `message` for the call; Envoy copies it.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

pub fn info(message: &str) {
    log(abi::LOG_INFO, message);
}

pub fn warn(message: &str) {
    log(abi::LOG_WARN, message);
}

pub fn error(message: &str) {
    log(abi::LOG_ERROR, message);
}
