//! A budget for log lines that clients can cause (refused API calls, refused
//! TLS handshakes): at most [`LogBudget::PER_SECOND`] such lines a second, so a
//! flood of bad requests cannot flood the log; what was left out is counted and
//! said with the next line that is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One budget per kind of line.
#[derive(Debug)]
pub struct LogBudget {
    window: Mutex<(Option<Instant>, u32)>,
    suppressed: AtomicU64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBudget {
    pub const PER_SECOND: u32 = 10;

    pub const fn new() -> Self {
        Self {
            window: Mutex::new((None, 0)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if a line may be written now (`n` lines were left out since
    /// the last one), `None` if this one is left out.
    pub fn take(&self) -> Option<u64> {
        let now = Instant::now();
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh =
            w.0.is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            *w = (Some(now), 0);
        }
        if w.1 >= Self::PER_SECOND {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        w.1 += 1;
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_ten_lines_a_second_and_the_rest_is_counted() {
        let b = LogBudget::new();
        let written = (0..25).filter(|_| b.take().is_some()).count();
        assert_eq!(written, LogBudget::PER_SECOND as usize);
        std::thread::sleep(Duration::from_millis(1010));
        assert_eq!(b.take(), Some(15));
        assert_eq!(b.take(), Some(0));
    }
}
