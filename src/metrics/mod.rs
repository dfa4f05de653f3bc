//! Timeline → derived values → OTel instruments; Prometheus rendering; OTLP push.

pub mod derive;
