//! TCP for shards: a SO_REUSEPORT listener per shard, and a stream that can write a response
//! header plus stored buffers with one `sendmsg` (no user-space copy of record bytes).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;

use futures::{AsyncReadExt, AsyncWriteExt};

pub struct Listener {
    inner: glommio::net::TcpListener,
}

impl Listener {
    /// Binds with SO_REUSEPORT, so every shard can listen on the same port and the kernel spreads
    /// connections over them.
    /// SO_REUSEADDR too, so a broker restarted at once gets its port back although the
    /// connections of its previous run linger in TIME_WAIT or FIN_WAIT.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        Ok(Listener::from_socket(Listener::bind_socket(addr)?))
    }

    /// The socket `bind` makes, bound and listening, for a thread that has no runtime yet
    /// (so start-up can fail before any shard runs); `from_socket` takes it on a shard.
    pub fn bind_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    }

    pub fn from_socket(listener: std::net::TcpListener) -> Listener {
        use std::os::unix::io::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor is a bound, listening TCP socket that `listener` gives up
        // ownership of here; glommio's listener owns and closes it from now on.
        let inner = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
        Listener { inner }
    }

    /// Binds without SO_REUSEPORT, for a listener only one shard serves (the metrics
    /// endpoint): a second process asking for the same port then fails at start instead of
    /// silently getting half the connections.
    pub fn bind_exclusive(addr: SocketAddr) -> io::Result<Listener> {
        Ok(Listener::from_socket(std::net::TcpListener::bind(addr)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr().map_err(io::Error::from)
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        let inner = self.inner.accept().await.map_err(io::Error::from)?;
        inner.set_nodelay(true).map_err(io::Error::from)?;
        Ok(Stream { inner })
    }
}

pub struct Stream {
    inner: glommio::net::TcpStream,
}

impl Stream {
    /// Connects to `addr` (for clients), with Nagle off.
    pub async fn connect(addr: SocketAddr) -> io::Result<Stream> {
        let inner = glommio::net::TcpStream::connect(addr)
            .await
            .map_err(io::Error::from)?;
        inner.set_nodelay(true).map_err(io::Error::from)?;
        Ok(Stream { inner })
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr().map_err(io::Error::from)
    }

    /// Splits into a reading and a writing half, so a connection can read the next request
    /// while an earlier response is being written.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        let fd = self.inner.as_raw_fd();
        let (read, write) = self.inner.split();
        (
            StreamReader { inner: read, fd },
            StreamWriter { inner: write, fd },
        )
    }
}

pub struct StreamReader {
    inner: futures::io::ReadHalf<glommio::net::TcpStream>,
    fd: std::os::unix::io::RawFd,
}

/// What `StreamReader::read_into` reads through the runtime when the socket is empty: the
/// bytes of the read that ends a wait, copied once into the caller's buffer.
const WAKE_READ_BYTES: usize = 16 << 10;

impl StreamReader {
    /// Appends what the socket holds to `buffer`, after making room for at least `room` bytes
    /// and up to its spare capacity, waiting for data if the socket holds none; returns the
    /// bytes appended, 0 at end of stream. The kernel copies straight into the buffer's spare
    /// capacity, which is neither zeroed first nor copied again.
    pub async fn read_into(
        &mut self,
        buffer: &mut bytes::BytesMut,
        room: usize,
    ) -> io::Result<usize> {
        buffer.reserve(room);
        let spare = buffer.spare_capacity_mut();
        let length = spare.len();
        // SAFETY: recv writes at most `length` bytes at a pointer valid for that many (spare
        // capacity of `buffer`, which nothing else borrows); it only writes, so the bytes need
        // not be initialized.
        let received = unsafe {
            libc::recv(
                self.fd,
                spare.as_mut_ptr().cast::<libc::c_void>(),
                length,
                libc::MSG_DONTWAIT,
            )
        };
        if received >= 0 {
            // SAFETY: recv initialized the first `received` (<= length) bytes of the spare capacity.
            unsafe { buffer.set_len(buffer.len() + received as usize) };
            return Ok(received as usize);
        }
        let error = io::Error::last_os_error();
        if !matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ) {
            return Err(error);
        }
        // Nothing there yet: let the runtime wait for data, then keep what that read returned.
        let mut first = [0u8; WAKE_READ_BYTES];
        let length = length.min(WAKE_READ_BYTES);
        let read = self.inner.read(&mut first[..length]).await?;
        buffer.extend_from_slice(&first[..read]);
        Ok(read)
    }

    /// Reads into `buf`, returning 0 at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).await
    }
}

pub struct StreamWriter {
    inner: futures::io::WriteHalf<glommio::net::TcpStream>,
    fd: std::os::unix::io::RawFd,
}

impl StreamWriter {
    /// Writes every buffer in order. Tries one non-blocking `sendmsg` over all of them first;
    /// whatever the socket does not take is written through the runtime, which waits for room.
    pub async fn write_vectored_all<B: AsRef<[u8]>>(&mut self, buffers: &[B]) -> io::Result<()> {
        let mut index = 0;
        let mut offset = 0;
        while index < buffers.len() {
            let sent = self.try_sendmsg(&buffers[index..], offset)?;
            if sent == 0 {
                // The socket is full: let the runtime wait for room while writing one buffer.
                let rest = &buffers[index].as_ref()[offset..];
                if rest.is_empty() {
                    index += 1;
                    offset = 0;
                    continue;
                }
                self.inner.write_all(rest).await?;
                index += 1;
                offset = 0;
                continue;
            }
            let mut left = sent;
            while left > 0 && index < buffers.len() {
                let available = buffers[index].as_ref().len() - offset;
                if left >= available {
                    left -= available;
                    index += 1;
                    offset = 0;
                } else {
                    offset += left;
                    left = 0;
                }
            }
            while index < buffers.len() && buffers[index].as_ref().len() == offset {
                index += 1;
                offset = 0;
            }
        }
        Ok(())
    }

    /// One non-blocking `sendmsg`; returns the bytes taken (0 if the socket would block).
    fn try_sendmsg<B: AsRef<[u8]>>(&self, buffers: &[B], first_offset: usize) -> io::Result<usize> {
        const IOV_MAX: usize = 512;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(buffers.len().min(IOV_MAX));
        for (i, b) in buffers.iter().take(IOV_MAX).enumerate() {
            let bytes = if i == 0 {
                &b.as_ref()[first_offset..]
            } else {
                b.as_ref()
            };
            if !bytes.is_empty() {
                slices.push(IoSlice::new(bytes));
            }
        }
        if slices.is_empty() {
            return Ok(0);
        }
        // SAFETY: msghdr points at `slices`, which outlives the call; IoSlice is ABI-compatible
        // with iovec.
        let sent = unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = slices.as_ptr() as *mut libc::iovec;
            header.msg_iovlen = slices.len() as _;
            libc::sendmsg(self.fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(error),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.inner.close().await;
    }
}
