//! Per-layer progress bars on stderr (pull, load), drawn only when asked for (a terminal):
//! one bar per layer, bytes of the blob read so far.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, Read};

pub struct Bars {
    multi: MultiProgress,
    style: ProgressStyle,
}

impl Bars {
    /// Bars drawn on stderr when `visible`, otherwise kept but never drawn.
    pub fn new(visible: bool) -> Bars {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Bars {
            multi: MultiProgress::with_draw_target(target),
            style,
        }
    }

    /// A bar for `total` bytes of the blob `digest` (shown by its short ID).
    pub fn add(&self, digest: &str, total: u64) -> ProgressBar {
        let b = self.multi.add(ProgressBar::new(total));
        b.set_style(self.style.clone());
        b.set_prefix(short(digest));
        b
    }

    /// Removes the bars from the terminal (the command prints its own summary).
    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}

/// The first 12 hex digits of a digest, as docker shows layer IDs.
pub fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

/// Advances `bar` by what is read through it.
pub struct Counting<'a, R> {
    pub inner: R,
    pub bar: &'a ProgressBar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_reader_advances_the_bar() {
        let bars = Bars::new(false);
        let bar = bars.add("sha256:0123456789abcdef", 10);
        let mut out = Vec::new();
        Counting {
            inner: &b"hello world"[..],
            bar: &bar,
        }
        .read_to_end(&mut out)
        .unwrap();
        assert_eq!((out.len(), bar.position()), (11, 11));
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
