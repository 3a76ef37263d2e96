//! Direct-I/O file helpers over the runtime's io_uring file type.

use std::path::Path;
use std::rc::Rc;

use crate::runtime::{DmaFile, OpenOptions};

/// Alignment of O_DIRECT writes. Every file system we run on accepts 4 KiB.
pub const ALIGN: u64 = 4096;

pub fn align_down(value: u64) -> u64 {
    value & !(ALIGN - 1)
}

pub fn align_up(value: u64) -> u64 {
    (value + ALIGN - 1) & !(ALIGN - 1)
}

thread_local! {
    static DEVICE_PROBED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The runtime decides once per thread and device whether reads may use the polled ring, by
/// reading the first block of the first direct-I/O file it opens. A new, empty segment file
/// answers that read with end-of-file, which looks like "polling works" and sends every later
/// read to a ring the device cannot serve (EOPNOTSUPP). So before the first log file, open a
/// file that has a block of data.
pub async fn probe_device(dir: &Path) -> std::io::Result<()> {
    if DEVICE_PROBED.with(|p| p.get()) {
        return Ok(());
    }
    let path = dir.join(format!(
        ".direct-io-probe-{:?}",
        std::thread::current().id()
    ));
    std::fs::write(&path, vec![0xa5u8; ALIGN as usize])?;
    let opened = DmaFile::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let file = opened?;
    let _ = file.close().await;
    DEVICE_PROBED.with(|p| p.set(true));
    Ok(())
}

/// Creates (truncating) a file for direct reads and writes.
pub async fn create(path: &Path) -> std::io::Result<Rc<DmaFile>> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .map(Rc::new)
        .map_err(std::io::Error::from)
}

/// Opens an existing file for direct reads and writes.
pub async fn open_rw(path: &Path) -> std::io::Result<Rc<DmaFile>> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map(Rc::new)
        .map_err(std::io::Error::from)
}

/// Writes `data` at the aligned position `position`, padding the last block with zeros.
pub async fn write_padded(file: &DmaFile, position: u64, data: &[&[u8]]) -> std::io::Result<()> {
    debug_assert_eq!(position % ALIGN, 0);
    let length: usize = data.iter().map(|d| d.len()).sum();
    if length == 0 {
        return Ok(());
    }
    let mut buffer = file.alloc_dma_buffer(align_up(length as u64) as usize);
    let target = buffer.as_bytes_mut();
    let mut at = 0;
    for piece in data {
        target[at..at + piece.len()].copy_from_slice(piece);
        at += piece.len();
    }
    target[at..].fill(0);
    let expected = target.len();
    let written = file.write_at(buffer, position).await?;
    if written != expected {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short direct write: {written} of {expected} bytes"),
        ));
    }
    Ok(())
}

/// Writes a small file whole (index files), durable when this returns.
pub async fn write_whole(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let file = create(path).await?;
    write_padded(&file, 0, &[data]).await?;
    file.truncate(data.len() as u64).await?;
    file.fdatasync().await?;
    Ok(())
}

/// Reads a small file whole; `None` if it does not exist.
pub async fn read_whole(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match DmaFile::open(path).await {
        Ok(file) => file,
        Err(e) => {
            let e = std::io::Error::from(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(e);
        }
    };
    let size = file.file_size().await?;
    if size == 0 {
        return Ok(Some(Vec::new()));
    }
    let read = file.read_at(0, size as usize).await?;
    let _ = file.close().await;
    Ok(Some(read.to_vec()))
}
