//! Containers that live on after the command that started them, docker's way without a
//! daemon: `run -d` hands the container to a small monitor process ([`monitor`]) that holds
//! its output and records its exit; the other verbs ([`control`], [`exec`]) find it by name
//! or ID prefix and ask the runtime (runc) for the truth ([`state`]).

pub mod attach;
pub mod control;
pub mod exec;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod network;
pub mod ports;
pub mod state;
pub mod tty;

use std::path::Path;

/// Removes the mount points the runtime had to add to the rootfs (empty dirs the image
/// lacked), so they stay out of `diff` and `commit` as Docker's init layer keeps them out.
/// Only while the union is mounted, and only empty dirs: rmdir refuses anything else.
pub fn tidy_mount_points(dir: &Path, cfg: &state::RunConfig) {
    let merged = dir.join("merged");
    if crate::image::container::is_mounted(&merged) {
        for m in &cfg.missing_mount_points {
            let _ = std::fs::remove_dir(merged.join(m.trim_start_matches('/')));
        }
    }
}
