//! The agent's protocol: one request per connection, a JSON line, with the client's stdin,
//! stdout and stderr passed beside it (`SCM_RIGHTS`) for a command to run; one JSON line back.

use std::io::{self, BufRead, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use serde::{Deserialize, Serialize};

/// Longest request line read.
const MAX_REQUEST: usize = 1 << 20;

/// What a client asks.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Run the command `argv` (the whole command line) in `cwd`, on the streams passed along;
    /// `fail_closed`: the client asks for fail-closed auditing (an agent without it declines).
    Run {
        argv: Vec<String>,
        cwd: PathBuf,
        #[serde(default)]
        fail_closed: bool,
        /// The client's `VAULT_LOG`, if set: how much the command logs on its stderr.
        #[serde(default)]
        log: Option<String>,
    },
    /// Lock: forget the keys and exit.
    Lock,
    /// Say how it is.
    Status,
}

/// What the agent answers.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(crate) struct Reply {
    /// The command's exit code.
    pub(crate) exit: u8,
    /// The agent's process id.
    pub(crate) pid: u32,
    /// Seconds left before it locks itself if nothing comes.
    pub(crate) idle_left_s: u64,
    /// The agent locks itself after this reply (its key went stale, or it was asked to).
    pub(crate) locking: bool,
    /// The agent did not run the command (it asks for more than the agent was unlocked
    /// with): the client runs it itself.
    #[serde(default)]
    pub(crate) declined: bool,
}

/// Sends `request` with `fds` beside it.
pub(crate) fn send(
    stream: &UnixStream,
    request: &Request,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors"));
    }
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&line)],
        &mut control,
        SendFlags::empty(),
    )?;
    let mut s = stream;
    s.write_all(line.get(sent..).unwrap_or_default())
}

/// Receives a request and the descriptors passed with it.
pub(crate) fn receive(stream: &UnixStream) -> io::Result<(Request, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    buf.truncate(got.bytes);
    // The rest of a line longer than one message.
    if !buf.contains(&b'\n') {
        let mut more = Vec::new();
        io::BufReader::new(stream)
            .take((MAX_REQUEST + 1) as u64)
            .read_until(b'\n', &mut more)?;
        buf.extend(more);
    }
    if buf.len() > MAX_REQUEST {
        return Err(io::Error::other("request too long"));
    }
    let request = serde_json::from_slice(buf.trim_ascii_end()).map_err(io::Error::other)?;
    Ok((request, fds))
}

/// Writes `reply` as a line.
pub(crate) fn answer(stream: &UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut s = stream;
    s.write_all(&line)
}

/// Reads the reply line.
pub(crate) fn read_reply(stream: &UnixStream) -> io::Result<Reply> {
    let mut line = Vec::new();
    io::BufReader::new(stream)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the agent closed the connection",
        ));
    }
    serde_json::from_slice(line.trim_ascii_end()).map_err(io::Error::other)
}
