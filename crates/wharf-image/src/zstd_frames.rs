//! zstd streams as gitlab-runner's `tarzstd` caches and OCI's `+zstd` layers come: one or more
//! frames back to back (a parallel compressor writes several), skippable frames between them.
//! ruzstd's decoder reads one frame; this reads them all.

use std::io::{BufRead, Read};

/// The first four bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream of one or more frames (skippable frames skipped), decoded.
pub struct ZstdFrames<R: BufRead> {
    source: Option<R>,
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(frame) = self.frame.as_mut() {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                // This frame is done: the next one, if any, starts right after it.
                self.source = self.frame.take().map(|f| f.into_inner());
            }
            let Some(mut source) = self.source.take() else {
                return Ok(0);
            };
            let head = source.fill_buf()?;
            if head.is_empty() {
                return Ok(0);
            }
            // Skippable frame: magic 0x184D2A5?, then a 4-byte little-endian length.
            if head.len() >= 8 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18] {
                let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
                source.consume(8);
                std::io::copy(&mut (&mut source).take(length), &mut std::io::sink())?;
                self.source = Some(source);
                continue;
            }
            let frame = ruzstd::decoding::StreamingDecoder::new(source).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("zstd: {e}"))
            })?;
            self.frame = Some(frame);
        }
    }
}

impl<R: BufRead> ZstdFrames<R> {
    /// The frames read from `source`, decoded one after the other.
    pub fn new(source: R) -> Self {
        ZstdFrames {
            source: Some(source),
            frame: None,
        }
    }
}
