//! Shared by the load tests: a short WAV clip, a config pointing at a simulator, and running
//! the `rtprobe` binary with a time bound (a hung child is killed, never waited on forever).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Run `cmd` with piped output; kill it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RTPROBE_LOG")
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().expect("wait after kill");
            panic!("{cmd:?} did not finish within {limit:?} ({s})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}
