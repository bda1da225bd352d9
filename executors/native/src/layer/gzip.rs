//! Deterministic parallel gzip (the pigz scheme), for [`Layer::write`](super::Layer::write).
//!
//! The uncompressed stream is cut into fixed [`BLOCK`]-byte blocks. Each block is compressed as
//! raw deflate on its own, on a small pool of worker threads, with the previous 32 KiB of
//! uncompressed input as preset dictionary (so matches still reach back across the cut), and
//! ends with a sync flush (an empty stored block, byte-aligned) so that the blocks concatenate
//! into one deflate stream; the last block finishes the stream. The blocks are written in order
//! inside ONE gzip member with a fixed header (mtime 0, OS 255 "unknown") and a trailer whose
//! CRC-32 combines the per-block CRCs.
//!
//! Every block is compressed by one call over its whole input into an output buffer larger than
//! its worst-case size, so the bytes depend only on the input and the level: not on the number
//! of workers, the timing, nor how the producer's writes were split.
//!
//! Memory is bounded: at most `2 × workers + 1` blocks are in flight (being filled, queued,
//! compressed or waiting for their turn to be written), each holding [`BLOCK`] bytes of input,
//! up to `BLOCK + BLOCK / 8 + 1 KiB` of output and a 32 KiB dictionary, plus one deflate state
//! (~400 KiB at level 6) per worker: about 12 MiB with 2 workers, under 45 MiB with the cap of
//! [`MAX_WORKERS`].
//!
//! Written here rather than taken from `gzp` (the parallel-gzip crate): its dictionary support
//! sits behind its C zlib backends, while the workspace uses the pure-Rust zlib-rs, which flate2's
//! raw-deflate `Compress` (with `set_dictionary`) and `Crc` (with `combine`) expose directly.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};

use flate2::{Compress, Crc, FlushCompress, Status};

use super::{LayerError, io_err};

/// Bytes of uncompressed input per block.
pub(super) const BLOCK: usize = 1 << 20;
/// Preset dictionary size: the deflate window.
const DICT: usize = 32 * 1024;
/// Most compressing threads used, whatever the machine (bounds memory).
pub(super) const MAX_WORKERS: usize = 8;

/// The number of compressing threads for this machine: one per available core, at most
/// [`MAX_WORKERS`].
pub(super) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_WORKERS)
}

/// One block's buffers, recycled between the producer, the workers and the writer.
#[derive(Default)]
struct Slot {
    /// Position of the block in the stream.
    index: u64,
    /// Whether this block ends the stream.
    last: bool,
    /// Up to 32 KiB of input preceding the block.
    dict: Vec<u8>,
    /// The block's uncompressed bytes.
    input: Vec<u8>,
    /// The block's raw deflate bytes.
    output: Vec<u8>,
    /// CRC-32 of `input`.
    crc: Crc,
}

/// Compresses everything `produce` writes (run on its own thread) as one gzip member at
/// `level` (0..=9) into `out`, with `workers` compressing threads, and returns what `produce`
/// returned.
///
/// # Errors
/// An error of `out` or of the compressor as [`LayerError::Io`] with an empty path, else the
/// error `produce` returned. If `out` fails, `produce`'s writes fail with `BrokenPipe`.
pub(super) fn compress<W, T, F>(out: &mut W, level: u32, workers: usize, produce: F) -> Result<T, LayerError>
where
    W: Write,
    T: Send,
    F: FnOnce(&mut BlockWriter) -> Result<T, LayerError> + Send,
{
    let out_err = || io_err(Path::new(""));
    let level = level.min(9);
    let workers = workers.clamp(1, MAX_WORKERS);
    let slots = 2 * workers + 1;
    let (free_tx, free_rx) = mpsc::sync_channel::<Slot>(slots);
    for _ in 0..slots {
        // The channel holds exactly `slots` items: this cannot block.
        let _ = free_tx.send(Slot::default());
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<Slot>(slots);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<io::Result<Slot>>();

    out.write_all(&header(level)).map_err(out_err())?;
    let (produced, written) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut writer = BlockWriter { slot: None, index: 0, free_rx, job_tx };
            let value = produce(&mut writer)?;
            writer.finish().map_err(out_err())?;
            Ok::<_, LayerError>(value)
        });
        let pool: Vec<_> = (0..workers)
            .map(|_| {
                let done_tx = done_tx.clone();
                let job_rx = &job_rx;
                scope.spawn(move || work(level, job_rx, &done_tx))
            })
            .collect();
        drop(done_tx);
        let written = write_in_order(out, &done_rx, &free_tx);
        // Dropping these unblocks a producer or workers waiting on a writer that stopped.
        drop(done_rx);
        drop(free_tx);
        let produced = producer.join().unwrap_or_else(|_| Err(panicked()));
        let mut written = written.map_err(out_err());
        for worker in pool {
            if worker.join().is_err() && written.is_ok() {
                written = Err(panicked());
            }
        }
        (produced, written)
    });
    let (crc, complete) = written?;
    let value = produced?;
    if !complete {
        return Err(LayerError::Io {
            path: PathBuf::new(),
            source: io::Error::other("the compressed stream ended early"),
        });
    }
    let mut trailer = [0u8; 8];
    trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the input size modulo 2^32, which is what `amount` keeps.
    trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
    out.write_all(&trailer).map_err(out_err())?;
    Ok(value)
}

fn panicked() -> LayerError {
    LayerError::Io { path: PathBuf::new(), source: io::Error::other("a compression thread panicked") }
}

/// The fixed 10-byte gzip header: deflate, no flags, mtime 0, XFL as gzip sets it for the
/// level, OS 255 (unknown) so the bytes are the same on every machine.
fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// Writes the compressed blocks to `out` in stream order as they come back from the workers,
/// returning each slot to the producer once written. Returns the combined CRC and whether the
/// last block was written.
fn write_in_order<W: Write>(
    out: &mut W,
    done_rx: &mpsc::Receiver<io::Result<Slot>>,
    free_tx: &mpsc::SyncSender<Slot>,
) -> io::Result<(Crc, bool)> {
    let mut crc = Crc::new();
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Slot> = BTreeMap::new();
    for done in done_rx.iter() {
        let slot = done?;
        waiting.insert(slot.index, slot);
        while let Some(slot) = waiting.remove(&next) {
            out.write_all(&slot.output)?;
            crc.combine(&slot.crc);
            next += 1;
            if slot.last {
                return Ok((crc, true));
            }
            // The producer may be gone (it failed); the slot is then simply dropped.
            let _ = free_tx.send(slot);
        }
    }
    Ok((crc, false))
}

/// A worker: compresses the blocks it takes from `job_rx` and sends them to the writer, until
/// the producer is done or the writer stopped.
fn work(level: u32, job_rx: &Mutex<mpsc::Receiver<Slot>>, done_tx: &mpsc::Sender<io::Result<Slot>>) {
    loop {
        // A poisoned lock only means another worker panicked; the receiver is still sound.
        let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(mut slot) = job else { return };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| compress_block(level, &mut slot)))
            .unwrap_or_else(|_| Err(io::Error::other("the compressor panicked")));
        let failed = result.is_err();
        if done_tx.send(result.map(|()| slot)).is_err() || failed {
            return;
        }
    }
}

/// Compresses `slot.input` into `slot.output` (raw deflate, dictionary `slot.dict`, sync flush,
/// or finish for the last block) and computes its CRC.
fn compress_block(level: u32, slot: &mut Slot) -> io::Result<()> {
    let compress_err = |e: flate2::CompressError| io::Error::other(format!("deflate: {e}"));
    // A new compressor per block, not a reset one: zlib-rs' reset keeps the old window and
    // hash chains, which changes the output (seen in tests), while a new one starts zeroed.
    // Its ~400 KiB setup is small next to compressing 1 MiB.
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    if !slot.dict.is_empty() {
        deflate.set_dictionary(&slot.dict).map_err(compress_err)?;
    }
    let input = slot.input.as_slice();
    slot.crc = Crc::new();
    slot.crc.update(input);
    slot.output.clear();
    // Larger than any deflate output of the block (level 1 emits at most 9 bits a byte), so
    // one call always does the whole block.
    slot.output.reserve(input.len() + input.len() / 8 + 1024);
    let flush = if slot.last { FlushCompress::Finish } else { FlushCompress::Sync };
    let status = deflate.compress_vec(input, &mut slot.output, flush).map_err(compress_err)?;
    let all_in = deflate.total_in() == input.len() as u64;
    let done =
        if slot.last { status == Status::StreamEnd } else { all_in && slot.output.len() < slot.output.capacity() };
    if !done {
        return Err(io::Error::other(format!(
            "deflate did not finish a {}-byte block in one call ({} bytes in, {} out)",
            input.len(),
            deflate.total_in(),
            slot.output.len()
        )));
    }
    Ok(())
}

/// The producer's side: a [`Write`] that cuts the stream into [`BLOCK`]-byte blocks and queues
/// each full one for compression, waiting for a free slot when all are in flight.
pub(super) struct BlockWriter {
    /// The block being filled (taken from the pool on the first write after a send).
    slot: Option<Slot>,
    /// Index of the next block.
    index: u64,
    free_rx: mpsc::Receiver<Slot>,
    job_tx: mpsc::SyncSender<Slot>,
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the gzip writer stopped")
}

impl BlockWriter {
    /// A free slot for block `self.index`, with `dict` as its dictionary.
    fn take_slot(&mut self, dict: &[u8]) -> io::Result<Slot> {
        let mut slot = self.free_rx.recv().map_err(|_| stopped())?;
        slot.index = self.index;
        slot.last = false;
        slot.input.clear();
        slot.input.reserve(BLOCK);
        slot.dict.clear();
        slot.dict.extend_from_slice(dict);
        self.index += 1;
        Ok(slot)
    }

    /// Queues a filled block, taking the next slot first so its dictionary can be copied.
    fn send_full(&mut self, full: Slot) -> io::Result<()> {
        let tail = &full.input[full.input.len().saturating_sub(DICT)..];
        let next = self.take_slot(tail)?;
        self.slot = Some(next);
        self.job_tx.send(full).map_err(|_| stopped())
    }

    /// Queues the last block (empty when the stream ended on a block boundary or was empty).
    fn finish(mut self) -> io::Result<()> {
        let mut slot = match self.slot.take() {
            Some(slot) => slot,
            None => self.take_slot(&[])?,
        };
        slot.last = true;
        self.job_tx.send(slot).map_err(|_| stopped())
    }
}

impl Write for BlockWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut slot = match self.slot.take() {
            Some(slot) => slot,
            None => self.take_slot(&[])?,
        };
        let n = data.len().min(BLOCK - slot.input.len());
        slot.input.extend_from_slice(&data[..n]);
        if slot.input.len() == BLOCK {
            self.send_full(slot)?;
        } else {
            self.slot = Some(slot);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};

    use super::*;

    /// Text with repeats and pseudo-random bytes, so every level has matches to find.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 11u64;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if i % 4 == 0 { (state >> 56) as u8 } else { b"layers of a sandbox image "[i % 26] }
            })
            .collect()
    }

    /// Compresses `data` written in `write_size`-byte pieces with `workers` threads.
    fn gz(data: &[u8], level: u32, workers: usize, write_size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        compress(&mut out, level, workers, |w| {
            for piece in data.chunks(write_size) {
                w.write_all(piece).map_err(io_err(Path::new("")))?;
            }
            Ok(())
        })
        .unwrap();
        out
    }

    fn flate2_gunzip(blob: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob).read_to_end(&mut out).unwrap();
        out
    }

    /// `gzip -d` of the system: a second, independent decoder that also checks CRC and ISIZE.
    fn system_gunzip(blob: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.gz");
        std::fs::write(&path, blob).unwrap();
        let output = Command::new("gzip").arg("-dc").arg(&path).stderr(Stdio::inherit()).output().unwrap();
        assert!(output.status.success(), "gzip -d failed: {:?}", output.status);
        output.stdout
    }

    /// Equal bytes, or a short message saying where they differ.
    fn assert_same(got: &[u8], want: &[u8]) {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            first.is_none() && got.len() == want.len(),
            "{} bytes vs {} expected, first difference at {first:?}",
            got.len(),
            want.len()
        );
    }

    #[test]
    fn same_bytes_for_any_worker_count_and_write_size() {
        let data = sample(5 * BLOCK + 12_345);
        let one = gz(&data, 6, 1, 64 * 1024);
        assert_same(&gz(&data, 6, 2, 7_777), &one);
        assert_same(&gz(&data, 6, 4, BLOCK + 3), &one);
        assert_same(&gz(&data, 6, 4, 64 * 1024), &one);
        assert!(flate2_gunzip(&one) == data);
        assert!(system_gunzip(&one) == data);
        assert_eq!(one[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        // Compressed, and about as well as one serial stream (the dictionaries keep matches).
        let mut serial = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        serial.write_all(&data).unwrap();
        let serial = serial.finish().unwrap();
        assert!(one.len() < data.len() * 9 / 10, "{} of {}", one.len(), data.len());
        assert!(one.len() < serial.len() + serial.len() / 50, "{} vs serial {}", one.len(), serial.len());
    }

    #[test]
    fn block_boundaries_empty_input_and_all_levels_round_trip() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK] {
            let data = sample(len);
            let blob = gz(&data, 6, 2, 100_000);
            assert!(flate2_gunzip(&blob) == data, "{len} bytes");
            assert!(system_gunzip(&blob) == data, "{len} bytes");
            assert_same(&gz(&data, 6, 3, 4096), &blob);
        }
        let data = sample(2 * BLOCK + 99);
        for level in [0, 1, 9] {
            let blob = gz(&data, level, 2, 50_000);
            assert!(system_gunzip(&blob) == data, "level {level}");
            assert_same(&gz(&data, level, 1, 50_000), &blob);
        }
    }

    /// The dictionary is what makes a match across a block boundary possible: a block that
    /// repeats the end of the previous one compresses to almost nothing.
    #[test]
    fn matches_reach_back_into_the_previous_block() {
        let mut data = sample(BLOCK);
        let tail = data[BLOCK - 20_000..].to_vec();
        for _ in 0..10 {
            data.extend_from_slice(&tail);
        }
        let blob = gz(&data, 6, 2, BLOCK);
        assert!(system_gunzip(&blob) == data);
        let first_alone = gz(&data[..BLOCK], 6, 1, BLOCK);
        assert!(blob.len() < first_alone.len() + 5_000, "{} vs {}", blob.len(), first_alone.len());
    }

    #[test]
    fn a_producer_error_is_returned_without_a_trailer() {
        let mut out = Vec::new();
        let err = compress(&mut out, 6, 2, |w| {
            w.write_all(&sample(3 * BLOCK)).map_err(io_err(Path::new("")))?;
            Err::<(), _>(LayerError::SizeChanged { path: "f".into(), expected: 1, actual: 2 })
        })
        .unwrap_err();
        assert!(matches!(err, LayerError::SizeChanged { .. }), "{err}");
    }

    /// A writer that fails after some bytes, like a full disk.
    struct Failing(usize);

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 < buf.len() {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_output_error_stops_the_producer_and_is_returned() {
        let data = sample(20 * BLOCK);
        let err = compress(&mut Failing(100_000), 6, 2, |w| {
            w.write_all(&data).map_err(io_err(Path::new("")))?;
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
