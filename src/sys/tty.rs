//! Terminals: window size (TIOCGWINSZ/TIOCSWINSZ) and raw mode (termios), for handing a
//! container's pseudo-terminal through to the user's.

use super::{SysResult, check};
use std::os::fd::{AsRawFd, BorrowedFd};

/// True if `fd` is a terminal.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty has no memory effects.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// The terminal's size as (rows, columns).
pub fn window_size(fd: BorrowedFd<'_>) -> SysResult<(u16, u16)> {
    // SAFETY: winsize is plain data; the kernel fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer given.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok((ws.ws_row, ws.ws_col))
}

/// Sets the terminal's size (the kernel sends SIGWINCH to its foreground group).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> SysResult<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer given.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// A terminal's settings, to restore them after raw mode.
pub struct Saved(libc::termios);

/// Puts the terminal in raw mode (every key goes through as is, no echo, no signals from
/// ^C: the container's terminal does all that); returns the settings before.
pub fn make_raw(fd: BorrowedFd<'_>) -> SysResult<Saved> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    check(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    let saved = Saved(t);
    // SAFETY: cfmakeraw edits the struct in place.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: valid fd and termios.
    check(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) })?;
    Ok(saved)
}

/// Restores settings saved by [`make_raw`].
pub fn restore(fd: BorrowedFd<'_>, saved: &Saved) {
    // SAFETY: valid fd and termios.
    unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &saved.0) };
}
