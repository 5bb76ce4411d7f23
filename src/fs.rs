//! Files, without blocking a worker: every call runs on the blocking pool while
//! the calling task parks (Linux has no readiness for regular files, so this is
//! what asyncio's `to_thread` and tokio's `fs` do too).
//!
//! The functions mirror `std::fs`. On a plain thread outside any runtime they
//! simply run inline. Interruptions: cancellation of the calling task unwinds;
//! an elapsed `ivy::timeout` scope makes the call return `ErrorKind::TimedOut`.
//! Either way the operation itself was already handed to a pool thread and
//! completes there (a write may still land); the caller only stops waiting.
//!
//! [`File`] moves buffers to and from the pool thread by copying them (a read
//! fills a pool-owned buffer that is copied into the caller's; a write copies the
//! caller's bytes), since the caller's borrow cannot travel to another thread.
//! Chunks are capped at 16 MiB per call, like a short read/write.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blocking::run_blocking;
use crate::io::or_raise_io;

const MAX_CHUNK: usize = 16 << 20;

/// Runs a blocking file operation on the pool and maps interruptions.
fn on_pool<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    // An interruption becomes the io::Error carrying it; a cancellation
    // unwinds, as on every I/O call (`or_raise_io`).
    or_raise_io(run_blocking(f).unwrap_or_else(|e| Err(e.into())))
}

/// Reads a whole file (`std::fs::read`).
pub fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    let path = path.as_ref().to_owned();
    on_pool(move || std::fs::read(path))
}

/// Reads a whole file as UTF-8 (`std::fs::read_to_string`).
pub fn read_to_string<P: AsRef<Path>>(path: P) -> io::Result<String> {
    let path = path.as_ref().to_owned();
    on_pool(move || std::fs::read_to_string(path))
}

/// Writes a whole file, creating or truncating it (`std::fs::write`).
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(path: P, contents: C) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    let contents = contents.as_ref().to_vec();
    on_pool(move || std::fs::write(path, contents))
}

/// Metadata of a path, following symlinks (`std::fs::metadata`).
pub fn metadata<P: AsRef<Path>>(path: P) -> io::Result<std::fs::Metadata> {
    let path = path.as_ref().to_owned();
    on_pool(move || std::fs::metadata(path))
}

/// Removes a file (`std::fs::remove_file`).
pub fn remove_file<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    on_pool(move || std::fs::remove_file(path))
}

/// Creates a directory and its missing parents (`std::fs::create_dir_all`).
pub fn create_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    on_pool(move || std::fs::create_dir_all(path))
}

/// An open file whose operations run on the blocking pool (`std::fs::File`).
/// Implements `Read`, `Write` and `Seek`, also on `&File`.
pub struct File {
    inner: Arc<std::fs::File>,
    path: Option<PathBuf>,
}

impl File {
    /// Opens a file for reading.
    pub fn open<P: AsRef<Path>>(path: P) -> io::Result<File> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let f = on_pool(move || std::fs::File::open(p))?;
        Ok(File {
            inner: Arc::new(f),
            path: Some(path),
        })
    }

    /// Creates (or truncates) a file for writing.
    pub fn create<P: AsRef<Path>>(path: P) -> io::Result<File> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let f = on_pool(move || std::fs::File::create(p))?;
        Ok(File {
            inner: Arc::new(f),
            path: Some(path),
        })
    }

    /// Opens with the given std options (`OpenOptions::open` on the pool).
    pub fn open_with<P: AsRef<Path>>(path: P, options: &std::fs::OpenOptions) -> io::Result<File> {
        let path = path.as_ref().to_owned();
        let p = path.clone();
        let options = options.clone();
        let f = on_pool(move || options.open(p))?;
        Ok(File {
            inner: Arc::new(f),
            path: Some(path),
        })
    }

    /// Wraps a std file.
    pub fn from_std(f: std::fs::File) -> File {
        File {
            inner: Arc::new(f),
            path: None,
        }
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub fn sync_all(&self) -> io::Result<()> {
        let f = self.inner.clone();
        on_pool(move || f.sync_all())
    }

    /// Flushes data to the device (`fdatasync`).
    pub fn sync_data(&self) -> io::Result<()> {
        let f = self.inner.clone();
        on_pool(move || f.sync_data())
    }

    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        let f = self.inner.clone();
        on_pool(move || f.metadata())
    }

    /// Truncates or extends the file.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        let f = self.inner.clone();
        on_pool(move || f.set_len(size))
    }

    fn read_chunk(&self, buf: &mut [u8]) -> io::Result<usize> {
        let f = self.inner.clone();
        let len = buf.len().min(MAX_CHUNK);
        let data = on_pool(move || {
            let mut data = vec![0u8; len];
            let n = (&*f).read(&mut data)?;
            data.truncate(n);
            Ok(data)
        })?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write_chunk(&self, buf: &[u8]) -> io::Result<usize> {
        let f = self.inner.clone();
        let data = buf[..buf.len().min(MAX_CHUNK)].to_vec();
        on_pool(move || (&*f).write(&data))
    }
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_chunk(buf)
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        // One pool trip for the whole rest of the file, not one per chunk.
        let f = self.inner.clone();
        let data = on_pool(move || {
            let mut data = Vec::new();
            (&*f).read_to_end(&mut data)?;
            Ok(data)
        })?;
        out.extend_from_slice(&data);
        Ok(data.len())
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.write_chunk(buf)
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        // One pool trip per chunk of up to MAX_CHUNK bytes.
        while !buf.is_empty() {
            let f = self.inner.clone();
            let chunk = buf[..buf.len().min(MAX_CHUNK)].to_vec();
            let n = chunk.len();
            on_pool(move || (&*f).write_all(&chunk))?;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let f = self.inner.clone();
        on_pool(move || (&*f).seek(pos))
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        (&*self).read_to_end(out)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self).seek(pos)
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl std::os::fd::AsRawFd for File {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}
