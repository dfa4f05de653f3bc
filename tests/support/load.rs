//! Shared by the load tests: a config pointing at a simulator, with a short WAV clip beside it.
//! They run the `rtprobe` binary through `support::run_bounded` (a hung child is killed, never
//! waited on forever).

use std::path::Path;

use super::wav::write_wav;

/// A config with one probe `load` against `addr`, streaming a `clip_secs` clip every
/// `interval` with the given first-text deadline, and `server.listen` on an ephemeral port.
/// Returns the config path.
pub fn write_config(
    dir: &Path,
    addr: std::net::SocketAddr,
    clip_secs: f64,
    interval: &str,
    first_text_deadline: &str,
) -> std::path::PathBuf {
    write_wav(&dir.join("clip.wav"), clip_secs);
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\nprobes:\n  - name: load\n    target: http://{addr}\n    model: demo-realtime\n    audio: clip.wav\n    reference: \"Mary had a little lamb, its fleece was white as snow.\"\n    interval: {interval}\n    jitter: 0\n    deadlines: {{ connect: 3s, first_text: {first_text_deadline}, done: 3s }}\n"
    );
    let path = dir.join("rtprobe.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}
