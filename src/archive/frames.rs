//! The archive's zstd framing: compressed frames for tar headers and
//! entries, stored frames for blobs that are already compressed. Byte
//! layout only; knows nothing of tar members or the depot.

use std::io::{self, Write};

/// The archive's zstd stream as a sequence of frames (decoders read
/// concatenated frames as one stream): compressed frames — multithreaded,
/// checksummed — for tar headers and entries, and *stored* frames of raw
/// blocks for blob bytes, which are already compressed or incompressible.
/// Each frame kind is written deterministically, so equal depots still give
/// equal bytes.
pub(super) struct Frames<W: Write> {
    state: FrameState<W>,
    level: i32,
}

pub(super) enum FrameState<W: Write> {
    Compressed(zstd::Encoder<'static, W>),
    Stored { out: W, buf: Vec<u8> },
    Done,
}

/// A stored frame's blocks: 128 KiB each (zstd's block limit), with a 128 KiB
/// window declared in the frame header. Full blocks are written as soon as
/// they are complete; the frame ends with a last block holding the rest
/// (empty when nothing is left, which the format allows).
pub(super) const STORED_BLOCK: usize = 128 * 1024;

impl<W: Write> Frames<W> {
    pub(super) fn new(out: W, level: i32) -> io::Result<Frames<W>> {
        Ok(Frames {
            state: FrameState::Compressed(Self::encoder(out, level)?),
            level,
        })
    }

    fn encoder(out: W, level: i32) -> io::Result<zstd::Encoder<'static, W>> {
        let mut enc = zstd::Encoder::new(out, level)?;
        // Multithreaded streaming output is the same for any number of
        // workers (>= 1), so the worker count is free to follow the machine.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(16)) as u32;
        enc.multithread(workers)?;
        enc.include_checksum(true)?;
        Ok(enc)
    }

    /// Ends the current frame and hands back the writer.
    fn end_frame(&mut self) -> io::Result<W> {
        match std::mem::replace(&mut self.state, FrameState::Done) {
            FrameState::Compressed(enc) => enc.finish(),
            FrameState::Stored { mut out, buf } => {
                stored_block(&mut out, &buf, true)?;
                Ok(out)
            }
            FrameState::Done => Err(io::Error::other("archive stream already finished")),
        }
    }

    /// Continues in a stored frame.
    pub(super) fn stored(&mut self) -> io::Result<()> {
        if let FrameState::Stored { .. } = self.state {
            return Ok(());
        }
        let mut out = self.end_frame()?;
        // Magic, then a frame header descriptor with no content size, no
        // checksum, no dictionary, and a window descriptor of 2^17 bytes.
        out.write_all(&[0x28, 0xB5, 0x2F, 0xFD, 0x00, (17 - 10) << 3])?;
        self.state = FrameState::Stored {
            out,
            buf: Vec::with_capacity(STORED_BLOCK),
        };
        Ok(())
    }

    /// Continues in a compressed frame.
    pub(super) fn compressed(&mut self) -> io::Result<()> {
        if let FrameState::Compressed(_) = self.state {
            return Ok(());
        }
        let out = self.end_frame()?;
        self.state = FrameState::Compressed(Self::encoder(out, self.level)?);
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<W> {
        let mut out = self.end_frame()?;
        out.flush()?;
        Ok(out)
    }
}

/// One raw block of a stored frame: a 3-byte little-endian header (last-block
/// bit, block type 0 = raw, size) and the bytes as they are.
pub(super) fn stored_block(out: &mut impl Write, data: &[u8], last: bool) -> io::Result<()> {
    debug_assert!(data.len() <= STORED_BLOCK);
    let h = (last as u32) | ((data.len() as u32) << 3);
    out.write_all(&h.to_le_bytes()[..3])?;
    out.write_all(data)
}

impl<W: Write> Write for Frames<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            FrameState::Compressed(enc) => enc.write(data),
            FrameState::Stored { out, buf } => {
                if buf.is_empty() && data.len() >= STORED_BLOCK {
                    // Straight from the caller's bytes, no copy.
                    stored_block(out, &data[..STORED_BLOCK], false)?;
                    return Ok(STORED_BLOCK);
                }
                let n = data.len().min(STORED_BLOCK - buf.len());
                buf.extend_from_slice(&data[..n]);
                if buf.len() == STORED_BLOCK {
                    stored_block(out, buf, false)?;
                    buf.clear();
                }
                Ok(n)
            }
            FrameState::Done => Err(io::Error::other("archive stream already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            FrameState::Compressed(enc) => enc.flush(),
            FrameState::Stored { out, .. } => out.flush(),
            FrameState::Done => Ok(()),
        }
    }
}
