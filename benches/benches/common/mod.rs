//! What the criterion benches share: their configuration, kept short (3 s per benchmark).

use std::time::Duration;

use criterion::Criterion;

/// 20 samples, after 1 s of warm-up, over 3 s of measurement.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
