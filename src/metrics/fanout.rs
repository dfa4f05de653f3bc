//! One instrument handle recording into several meter providers. `/metrics` and OTLP want
//! different aggregations of the same histogram (classic + native streams for Prometheus;
//! explicit *or* exponential for OTLP), and SDK views apply to every reader of a provider, so
//! each has its own provider. A `Recorder` call still records once: the handle forwards the
//! value to each provider's instrument. With one provider (no OTLP) no wrapper is built.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, SyncInstrument, UpDownCounter};

/// Forwards every measurement to each inner instrument.
struct FanOut<I>(Vec<I>);

macro_rules! fan_out {
    ($ty:ident, $method:ident) => {
        impl<T: Copy + Send + Sync + 'static> SyncInstrument<T> for FanOut<$ty<T>> {
            fn measure(&self, value: T, attributes: &[KeyValue]) {
                for i in &self.0 {
                    i.$method(value, attributes);
                }
            }
        }

        impl<T: Copy + Send + Sync + 'static> Fan for $ty<T> {
            fn fan(mut all: Vec<Self>) -> Self {
                if all.len() == 1 {
                    return all.remove(0);
                }
                $ty::new(Arc::new(FanOut(all)))
            }
        }
    };
}

/// Builds one handle over the same instrument of every meter.
pub(crate) trait Fan: Sized {
    fn fan(all: Vec<Self>) -> Self;
}

fan_out!(Histogram, record);
fan_out!(Counter, add);
fan_out!(Gauge, record);
fan_out!(UpDownCounter, add);

/// `build` on every meter, as one handle.
pub(crate) fn on_all<I: Fan>(meters: &[Meter], build: impl Fn(&Meter) -> I) -> I {
    I::fan(meters.iter().map(build).collect())
}
