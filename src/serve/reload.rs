//! Watching the config file for changes. The watch is on the file's parent directory, not the
//! file: Kubernetes updates a mounted ConfigMap by creating a new timestamped directory and
//! atomically renaming a `..data` symlink over the old one, so the file itself never sees a
//! write, and editors often replace a file by renaming a temporary over it.
//! Events are filtered to the file name and `..data`, then debounced, because one update
//! arrives as a burst of create/rename/remove events.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::scheduler::BoxFuture;

/// Quiet time after the last relevant event before a reload is triggered.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The name Kubernetes gives the symlink it swaps on a ConfigMap update.
const CONFIGMAP_DATA: &str = "..data";

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir} for config changes: {source}")]
pub struct WatchError {
    pub dir: PathBuf,
    #[source]
    pub source: notify::Error,
}

/// A running watch; dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Does this event concern the config file (by name) or the ConfigMap data symlink?
pub fn concerns(event: &notify::Event, file_name: &OsStr) -> bool {
    let kind_ok = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    );
    kind_ok
        && event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == file_name || n == CONFIGMAP_DATA)
        })
}

/// Watch `config`'s parent directory and call `on_change` once per debounced burst of
/// relevant events. `on_change` decides whether the contents really changed.
pub fn watch(
    config: &Path,
    debounce: Duration,
    on_change: Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>,
) -> Result<ConfigWatcher, WatchError> {
    let dir = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name: OsString = config.file_name().unwrap_or_default().to_os_string();
    // Capacity 1: a pending signal already means "reload after the burst", more add nothing.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if concerns(&ev, &file_name) => {
                let _ = tx.try_send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "config watch error"),
        })
        .map_err(|source| WatchError {
            dir: dir.clone(),
            source,
        })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            dir: dir.clone(),
            source,
        })?;
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            on_change().await;
        }
    });
    Ok(ConfigWatcher {
        _watcher: watcher,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn ev(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn filters_by_name_and_kind() {
        let f = OsStr::new("rtprobe.yaml");
        assert!(concerns(
            &ev(EventKind::Modify(ModifyKind::Any), "/c/rtprobe.yaml"),
            f
        ));
        assert!(concerns(
            &ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/c/..data"
            ),
            f
        ));
        assert!(concerns(
            &ev(EventKind::Create(CreateKind::File), "/c/rtprobe.yaml"),
            f
        ));
        assert!(!concerns(
            &ev(EventKind::Modify(ModifyKind::Any), "/c/other.yaml"),
            f
        ));
        assert!(!concerns(
            &ev(
                EventKind::Access(notify::event::AccessKind::Any),
                "/c/rtprobe.yaml"
            ),
            f
        ));
    }
}
