//! TCP sockets for `ivyrt`'s streams: `_TcpStream` and `_TcpListener` over
//! `ivy::net::TcpStream` / `TcpListener`, and `_tcp_connect` / `_tcp_listen`;
//! UDP: `DatagramSocket` over `ivy::net::UdpSocket` (`_udp_bind`).
//! asyncio's reader/writer/server API is built over them in
//! `python/ivyrt/_streams.py`.
//!
//! Design decisions:
//! - **Every socket call goes through `block::blocking`**, even one that will
//!   not wait: ivy's socket calls may yield to the worker's other tasks (the
//!   cooperative I/O budget) before the syscall, and a task must never switch
//!   away while it holds the GIL. Reads and writes use the `_deadline` forms,
//!   which never unwind.
//! - **Host names are resolved here, on ivy's blocking pool** (the task
//!   parks), and only socket addresses reach ivy: `TcpListener::bind` is an
//!   unwinding call when it has a name to resolve, and an unwind must never
//!   cross Python frames.
//! - **A close is an end, not an error**: `close()` wakes every call blocked
//!   on the socket (ivy's rule); a `recv` woken so, or made after, reads end
//!   of file (`b""`, as asyncio's reader sees EOF once its transport is
//!   lost), an `accept` returns `None` (the server's accept loop ends), and a
//!   `sendall` raises `ConnectionResetError`.
//! - **OS errors are `OSError(errno, strerror)`**, which Python turns into the
//!   subclass the socket module would raise (`ConnectionRefusedError`, ...)
//!   with `errno` set: code that tests `e.errno` (the server's accept loop
//!   retrying after `EMFILE`, as asyncio does) works. PyO3's own conversion
//!   keeps only the message.
//! - `sendall` writes everything before returning (the writer's back-pressure
//!   is the socket's: `StreamWriter.write` parks while the peer does not
//!   read, and `drain()` has nothing left to do).

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Instant;

use ivy::WaitError;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyConnectionResetError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::block::{blocking, deadline_after};

/// Runs a socket call with the GIL released: interruptions (cancellation,
/// deadlines) become Python exceptions through `blocking`; a close and the
/// other I/O errors come back as `io::Error` for the caller to map.
fn io_call<R: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> io::Result<R> + Send,
) -> PyResult<io::Result<R>> {
    blocking(py, || match f() {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match WaitError::of(&e) {
            Some(WaitError::Closed) | None => Ok(Err(e)),
            Some(interrupt) => Err(interrupt),
        },
    })
}

/// The Python exception for an OS error: `OSError(errno, strerror)`, which
/// Python itself turns into the matching subclass (`ConnectionRefusedError`,
/// ...) with `errno` set, as the socket module raises it. Errors without an
/// errno keep PyO3's mapping by kind.
fn os_error(e: io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            // Rust appends " (os error N)"; the errno is in `errno` already.
            let text = match text.rfind(" (os error ") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            PyOSError::new_err((code, text))
        }
        None => e.into(),
    }
}

fn is_closed(e: &io::Error) -> bool {
    WaitError::of(e) == Some(WaitError::Closed)
}

/// The socket module's form of an address: `(host, port)` for IPv4,
/// `(host, port, flowinfo, scope_id)` for IPv6.
fn address<'py>(py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    match addr {
        SocketAddr::V4(a) => (a.ip().to_string(), a.port()).into_pyobject(py),
        SocketAddr::V6(a) => {
            (a.ip().to_string(), a.port(), a.flowinfo(), a.scope_id()).into_pyobject(py)
        }
    }
}

/// The addresses of `host:port`: a literal at once, a name on the blocking pool.
fn resolve(py: Python<'_>, host: &str, port: u16) -> PyResult<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_owned();
    let job = ivy::spawn_blocking(move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
    });
    let addrs = match blocking(py, || job.join_deadline(None))? {
        Ok(found) => found.map_err(os_error)?,
        Err(e) => return Err(PyOSError::new_err(format!("name lookup failed: {e}"))),
    };
    if addrs.is_empty() {
        return Err(PyOSError::new_err(format!("no address found for {host:?}")));
    }
    Ok(addrs)
}

/// Tries each address in turn; the last error if none works.
fn each_addr<T>(
    addrs: &[SocketAddr],
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for &a in addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) if WaitError::of(&e).is_some_and(WaitError::is_interrupt) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

/// The largest read of one `recv` (what a scratch buffer may grow to).
const MAX_RECV: usize = 1 << 20;

thread_local! {
    /// Each thread's buffer for `recv` (see there).
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A connected TCP socket (the transport under a StreamReader/StreamWriter).
#[pyclass(module = "ivyrt", name = "_TcpStream", frozen)]
pub struct TcpStream {
    s: ivy::net::TcpStream,
}

// `recv`'s parts before and after its park, out of line: the frame that
// parks is part of every reading task's one stack page (findings/pystack.md),
// and these parts' locals, inlined, made it 368 bytes.

/// This thread's scratch buffer, at least `n` bytes, moved out for the call (a
/// task that reads on the same thread meanwhile finds none and makes its own),
/// so that a read costs no allocation and no zeroing.
#[inline(never)]
fn scratch_take(n: usize) -> Vec<u8> {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < n {
        buf.resize(n, 0);
    }
    buf
}

/// `recv`'s result from the read's, and the scratch buffer put back.
#[inline(never)]
fn recv_result<'py>(
    py: Python<'py>,
    got: PyResult<io::Result<usize>>,
    buf: Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let result = match got {
        Ok(Ok(k)) => Ok(PyBytes::new(py, &buf[..k])),
        Ok(Err(e)) if is_closed(&e) => Ok(PyBytes::new(py, b"")),
        Ok(Err(e)) => Err(os_error(e)),
        Err(e) => Err(e),
    };
    SCRATCH.with(|s| {
        let other = s.take();
        s.set(if other.len() > buf.len() { other } else { buf });
    });
    result
}

#[pymethods]
impl TcpStream {
    /// Up to `n` bytes (at most 1 MiB), parking until some arrive; `b""` at
    /// end of file or once the socket is closed.
    fn recv<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let n = n.min(MAX_RECV);
        let mut buf = scratch_take(n);
        let got = io_call(py, || self.s.read_deadline(&mut buf[..n], None));
        recv_result(py, got, buf)
    }

    /// Writes all of `data` (bytes-like), parking while the socket's buffer
    /// is full. ConnectionResetError once the socket is closed.
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let owned;
        let bytes: &[u8] = match data.cast::<PyBytes>() {
            Ok(b) => b.as_bytes(),
            Err(_) => {
                owned = PyBuffer::<u8>::get(data)?.to_vec(py)?;
                &owned
            }
        };
        let sent = io_call(py, || {
            let mut rest = bytes;
            while !rest.is_empty() {
                match self.s.write_deadline(rest, None) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(k) => rest = &rest[k..],
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        match sent {
            Ok(()) => Ok(()),
            Err(e) if is_closed(&e) => Err(PyConnectionResetError::new_err("the stream is closed")),
            Err(e) => Err(os_error(e)),
        }
    }

    /// Shuts down the sending side (the peer reads end of file).
    fn shutdown_write(&self) -> PyResult<()> {
        match self.s.shutdown(Shutdown::Write) {
            Err(e) if !is_closed(&e) && e.kind() != io::ErrorKind::NotConnected => Err(os_error(e)),
            _ => Ok(()),
        }
    }

    /// Closes the socket at once: the peer reads end of file, and every call
    /// blocked on it (in any task or thread) returns. Idempotent.
    fn close(&self) {
        self.s.close();
    }

    /// The peer's address.
    fn peername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address(py, self.s.peer_addr().map_err(os_error)?)
    }

    /// This end's address.
    fn sockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address(py, self.s.local_addr().map_err(os_error)?)
    }

    /// The file descriptor (owned by this object: do not close it).
    fn fileno(&self) -> i32 {
        self.s.as_raw_fd()
    }

    /// Sets TCP_NODELAY.
    fn set_nodelay(&self, on: bool) -> PyResult<()> {
        self.s.set_nodelay(on).map_err(os_error)
    }
}

/// A listening TCP socket (the one under a Server).
#[pyclass(module = "ivyrt", name = "_TcpListener", frozen)]
pub struct TcpListener {
    l: ivy::net::TcpListener,
}

#[pymethods]
impl TcpListener {
    /// The next connection and its peer's address, parking until one comes;
    /// None once the listener is closed.
    fn accept<'py>(&self, py: Python<'py>) -> PyResult<Option<(TcpStream, Bound<'py, PyTuple>)>> {
        match io_call(py, || self.l.accept_deadline(None))? {
            Ok((s, peer)) => {
                // Small writes of a request/response protocol should not wait
                // for Nagle's algorithm; asyncio sets TCP_NODELAY too.
                let _ = s.set_nodelay(true);
                Ok(Some((TcpStream { s }, address(py, peer)?)))
            }
            Err(e) if is_closed(&e) => Ok(None),
            Err(e) => Err(os_error(e)),
        }
    }

    /// Stops listening at once (a blocked `accept` returns None; new connects
    /// are refused). Idempotent.
    fn close(&self) {
        self.l.close();
    }

    /// The address listened on (the real port when bound to port 0).
    fn sockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address(py, self.l.local_addr().map_err(os_error)?)
    }

    /// The file descriptor (owned by this object: do not close it).
    fn fileno(&self) -> i32 {
        self.l.as_raw_fd()
    }
}

fn port_of(port: i64) -> PyResult<u16> {
    u16::try_from(port).map_err(|_| PyValueError::new_err("port must be 0-65535"))
}

/// Connects to `host:port` (each resolved address in turn), parking until
/// connected; `timeout` (seconds) bounds the whole attempt (TimeoutError).
#[pyfunction]
#[pyo3(signature = (host, port, timeout=None))]
fn _tcp_connect(
    py: Python<'_>,
    host: &str,
    port: i64,
    timeout: Option<f64>,
) -> PyResult<TcpStream> {
    let deadline: Option<Instant> = deadline_after(timeout)?;
    let addrs = resolve(py, host, port_of(port)?)?;
    let s = io_call(py, || {
        each_addr(&addrs, |a| {
            ivy::net::TcpStream::connect_deadline(a, deadline)
        })
    })?
    .map_err(os_error)?;
    let _ = s.set_nodelay(true);
    Ok(TcpStream { s })
}

/// Listens on `host:port` (None or "": every IPv4 interface; port 0: any).
#[pyfunction]
#[pyo3(signature = (host, port))]
fn _tcp_listen(py: Python<'_>, host: Option<&str>, port: i64) -> PyResult<TcpListener> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or("0.0.0.0");
    let addrs = resolve(py, host, port_of(port)?)?;
    // Socket addresses only: `bind` has nothing to resolve, so it neither
    // parks nor unwinds.
    let l = each_addr(&addrs, ivy::net::TcpListener::bind).map_err(os_error)?;
    Ok(TcpListener { l })
}

/// `(host, port, ...)` (the socket module's address tuples) as a socket
/// address, a host name resolved on the blocking pool.
fn socket_addr(py: Python<'_>, addr: &Bound<'_, PyAny>) -> PyResult<SocketAddr> {
    let host: String = addr.get_item(0)?.extract()?;
    let port: i64 = addr.get_item(1)?.extract()?;
    Ok(resolve(py, &host, port_of(port)?)?[0])
}

/// A UDP socket (`ivyrt.open_datagram`): datagrams to and from any address,
/// or to and from one peer once connected.
#[pyclass(module = "ivyrt", name = "DatagramSocket", frozen)]
pub struct UdpSocket {
    s: ivy::net::UdpSocket,
}

#[pymethods]
impl UdpSocket {
    /// Sends `data` (bytes-like) as one datagram to `addr` (`(host, port)`);
    /// returns the number of bytes sent.
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let to = socket_addr(py, addr)?;
        let data = bytes_of(data)?;
        closed_is_reset(io_call(py, || self.s.send_to_deadline(&data, to, None))?)
    }

    /// Sends `data` as one datagram to the connected peer.
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let data = bytes_of(data)?;
        closed_is_reset(io_call(py, || self.s.send_deadline(&data, None))?)
    }

    /// The next datagram (at most `bufsize` bytes of it) and its sender's
    /// address, parking until one arrives. ConnectionResetError once closed.
    #[pyo3(signature = (bufsize=65535))]
    fn recvfrom<'py>(
        &self,
        py: Python<'py>,
        bufsize: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyTuple>)> {
        let mut buf = vec![0u8; bufsize.min(MAX_RECV)];
        let (k, from) =
            closed_is_reset(io_call(py, || self.s.recv_from_deadline(&mut buf, None))?)?;
        Ok((PyBytes::new(py, &buf[..k]), address(py, from)?))
    }

    /// The next datagram from the connected peer (at most `bufsize` bytes).
    #[pyo3(signature = (bufsize=65535))]
    fn recv<'py>(&self, py: Python<'py>, bufsize: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut buf = vec![0u8; bufsize.min(MAX_RECV)];
        let k = closed_is_reset(io_call(py, || self.s.recv_deadline(&mut buf, None))?)?;
        Ok(PyBytes::new(py, &buf[..k]))
    }

    /// Sets the default peer of `send`/`recv` (and receives only from it).
    fn connect(&self, py: Python<'_>, addr: &Bound<'_, PyAny>) -> PyResult<()> {
        let to = socket_addr(py, addr)?;
        // A socket address: nothing to resolve, so this neither parks nor
        // unwinds.
        self.s.connect(to).map_err(os_error)
    }

    /// Closes the socket; calls blocked on it return ConnectionResetError.
    fn close(&self) {
        self.s.close();
    }

    /// This end's address.
    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address(py, self.s.local_addr().map_err(os_error)?)
    }

    /// The connected peer's address.
    fn getpeername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        address(py, self.s.peer_addr().map_err(os_error)?)
    }

    /// The file descriptor (owned by this object: do not close it).
    fn fileno(&self) -> i32 {
        self.s.as_raw_fd()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.s.close();
        false
    }
}

/// A bytes-like object's bytes (copied: a datagram is small).
fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    match data.cast::<PyBytes>() {
        Ok(b) => Ok(b.as_bytes().to_vec()),
        Err(_) => PyBuffer::<u8>::get(data)?.to_vec(data.py()),
    }
}

fn closed_is_reset<T>(r: io::Result<T>) -> PyResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if is_closed(&e) => Err(PyConnectionResetError::new_err("the socket is closed")),
        Err(e) => Err(os_error(e)),
    }
}

/// A UDP socket bound to `host:port` (port 0: any).
#[pyfunction]
#[pyo3(signature = (host, port))]
fn _udp_bind(py: Python<'_>, host: &str, port: i64) -> PyResult<UdpSocket> {
    let addrs = resolve(py, host, port_of(port)?)?;
    let s = each_addr(&addrs, ivy::net::UdpSocket::bind).map_err(os_error)?;
    Ok(UdpSocket { s })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<UdpSocket>()?;
    m.add_function(wrap_pyfunction!(_udp_bind, m)?)?;
    m.add_class::<TcpStream>()?;
    m.add_class::<TcpListener>()?;
    m.add_function(wrap_pyfunction!(_tcp_connect, m)?)?;
    m.add_function(wrap_pyfunction!(_tcp_listen, m)?)?;
    Ok(())
}
