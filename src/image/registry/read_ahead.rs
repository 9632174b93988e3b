//! Reading a layer blob on one thread while it is unpacked on another.
//!
//! A pull's work for one layer is two chains: socket -> blob file + sha256 of the blob, and
//! inflate -> sha256 of the tar -> untar syscalls. Run on one thread they take the sum of
//! both; here the first runs on a reader thread that hands chunks to the second through a
//! bounded channel, so a pull uses both cores of a small machine.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per chunk handed over.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight: bounds the memory a pull holds per layer (here 2 MiB).
const IN_FLIGHT: usize = 8;

/// Runs `consume` on a reader over everything `source` yields, while a scoped thread reads
/// `source` to its end (or first error) ahead of it. The reader thread drains `source` even
/// when `consume` stops early, as a blob must be hashed whole whatever its content. Returns
/// what `consume` returned, `source`, and how the reading of `source` ended.
pub fn read_ahead<S, T>(
    mut source: S,
    consume: impl FnOnce(&mut ChannelReader) -> T,
) -> (T, S, io::Result<()>)
where
    S: Read + Send,
{
    let (tx, rx) = sync_channel(IN_FLIGHT);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let end = pump(&mut source, &tx);
            (source, end)
        });
        let mut r = ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            eof: false,
        };
        let out = consume(&mut r);
        drop(r); // the reader thread then drains without sending
        let (source, end) = match reader.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        };
        (out, source, end)
    })
}

/// Reads `source` to its end, sending full chunks while someone listens.
fn pump(source: &mut impl Read, tx: &SyncSender<io::Result<Vec<u8>>>) -> io::Result<()> {
    let mut listening = true;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        let res = loop {
            if filled == buf.len() {
                break Ok(());
            }
            match source.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        let end = filled < CHUNK || res.is_err();
        if listening && filled > 0 {
            listening = tx.send(Ok(buf)).is_ok();
        }
        match res {
            Err(e) => {
                if listening {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                return Err(e);
            }
            Ok(()) if end => {
                if listening {
                    let _ = tx.send(Ok(Vec::new())); // the end of the stream
                }
                return Ok(());
            }
            Ok(()) => {}
        }
    }
}

/// The consuming side: a `Read` over the chunks the reader thread sends.
pub struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.eof || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.eof = true,
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the blob reader stopped")),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `data` in odd-sized reads, then fails if `fail` says so.
    struct Source {
        data: Vec<u8>,
        at: usize,
        fail: bool,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.fail {
                    Err(io::Error::other("boom"))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(7919).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn passes_everything_through_in_order() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
            let d = data(n);
            let src = Source {
                data: d.clone(),
                at: 0,
                fail: false,
            };
            let (got, src, end) = read_ahead(src, |r| {
                let mut v = Vec::new();
                r.read_to_end(&mut v).map(|_| v)
            });
            assert_eq!(got.unwrap(), d, "{n} bytes");
            assert_eq!(src.at, n);
            assert!(end.is_ok());
        }
    }

    #[test]
    fn source_errors_reach_both_sides() {
        let src = Source {
            data: data(CHUNK + 5),
            at: 0,
            fail: true,
        };
        let (got, _, end) = read_ahead(src, |r| io::copy(r, &mut io::sink()));
        assert_eq!(got.unwrap_err().to_string(), "boom");
        assert_eq!(end.unwrap_err().to_string(), "boom");
    }

    #[test]
    fn drains_the_source_when_the_consumer_stops_early() {
        let n = 20 * CHUNK + 3;
        let src = Source {
            data: data(n),
            at: 0,
            fail: false,
        };
        let (_, src, end) = read_ahead(src, |r| r.read(&mut [0u8; 10]));
        assert_eq!(src.at, n);
        assert!(end.is_ok());
    }
}
