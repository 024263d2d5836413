//! Files cut into fixed-size chunks that the workers compress apart, as pigz does: each chunk
//! ends on a byte boundary, so the pieces laid end to end are one deflate stream. Boundaries
//! depend on offsets only, never on the threads: same bytes always.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::zipfile::Method;

/// How hard the compressor works. The zip opens with every unzip either way: plain deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    /// libdeflate's level 6: `zip -9`'s size (zlib's level 9) at several times its speed.
    #[default]
    Default,
    /// libdeflate's level 12 (near-optimal parsing): a smaller zip for about 5x the CPU time.
    Best,
}

impl Compression {
    /// Bytes per chunk: libdeflate's chunks cannot share a window, so they are large.
    pub fn chunk(self) -> u64 {
        4 << 20
    }

    /// libdeflate's compression level.
    fn level(self) -> i32 {
        match self {
            Compression::Default => 6,
            Compression::Best => 12,
        }
    }
}

/// One chunk of one file to compress.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub entry: usize,
    pub offset: u64,
    pub len: u64,
    /// The chunk is the whole file: it may be stored if deflate cannot shrink it.
    pub whole: bool,
    pub last: bool,
}

/// The jobs of a file of `size` bytes: none when it is empty.
pub fn split(entry: usize, size: u64, chunk: u64) -> impl Iterator<Item = Job> {
    let count = size.div_ceil(chunk);
    (0..count).map(move |k| {
        let offset = k * chunk;
        Job {
            entry,
            offset,
            len: chunk.min(size - offset),
            whole: count == 1,
            last: k + 1 == count,
        }
    })
}

/// A compressed chunk.
pub struct Piece {
    pub method: Method,
    pub data: Vec<u8>,
    pub crc32: u32,
    pub len: u64,
}

/// Reads the job's bytes (and its window) from `path` and compresses them.
pub fn compress(path: &Path, job: &Job, compression: Compression) -> io::Result<Piece> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(job.offset))?;
    let mut data = Vec::with_capacity(job.len as usize);
    file.take(job.len).read_to_end(&mut data)?;
    if data.len() as u64 != job.len {
        return Err(io::Error::other(
            "the file got shorter while it was being zipped",
        ));
    }
    let data = &data[..];
    let crc32 = crc32fast::hash(data);
    let deflated = super::deflate::deflate(data, job.last, compression.level())?;
    let piece = if job.whole && deflated.len() >= data.len() {
        Piece {
            method: Method::Stored,
            data: data.to_vec(),
            crc32,
            len: job.len,
        }
    } else {
        Piece {
            method: Method::Deflated,
            data: deflated,
            crc32,
            len: job.len,
        }
    };
    Ok(piece)
}

/// Raw deflate of a whole buffer, as `best` compresses: for a small file rewritten whole.
pub fn deflate_whole(data: &[u8]) -> io::Result<Vec<u8>> {
    super::deflate::deflate(data, true, Compression::Best.level())
}

/// The CRC-32 of two pieces laid end to end.
pub fn combine(crc: u32, len: u64, next: &Piece) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial_len(crc, len);
    hasher.combine(&crc32fast::Hasher::new_with_initial_len(
        next.crc32, next.len,
    ));
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        let chunk = 10;
        let lens = |size| split(0, size, chunk).map(|j| j.len).collect::<Vec<_>>();
        assert!(lens(0).is_empty());
        assert_eq!(lens(1), [1]);
        assert_eq!(lens(10), [10]);
        assert_eq!(lens(11), [10, 1]);
        assert_eq!(lens(30), [10, 10, 10]);
        let jobs: Vec<Job> = split(3, 25, chunk).collect();
        assert!(jobs.iter().all(|j| j.entry == 3 && !j.whole));
        assert_eq!(
            jobs.iter().map(|j| (j.offset, j.last)).collect::<Vec<_>>(),
            [(0, false), (10, false), (20, true)]
        );
        assert!(split(0, 10, chunk).all(|j| j.whole && j.last));
    }

    /// The pieces of a file, laid end to end, inflate to the file.
    #[test]
    fn pieces_make_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (((i * 7) % 251) ^ (i / 1000)) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        for compression in [Compression::Default, Compression::Best] {
            let chunk = 64 << 10;
            let mut stream = Vec::new();
            let mut crc = 0;
            let mut len = 0;
            for job in split(0, data.len() as u64, chunk) {
                let piece = compress(&path, &job, compression).unwrap();
                crc = combine(crc, len, &piece);
                len += piece.len;
                stream.extend_from_slice(&piece.data);
            }
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&stream[..])
                .read_to_end(&mut inflated)
                .unwrap();
            assert!(inflated == data, "{compression:?}");
            assert_eq!(crc, crc32fast::hash(&data), "{compression:?}");
            assert!(stream.len() < data.len() / 2, "{compression:?}");
        }
    }

    #[test]
    fn incompressible_whole_files_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("noise");
        let noise = support::noise(5000, 0x2545_f491);
        std::fs::write(&path, &noise).unwrap();
        let job = split(0, 5000, 1 << 20).next().unwrap();
        let piece = compress(&path, &job, Compression::Default).unwrap();
        assert_eq!(piece.method, Method::Stored);
        assert_eq!(piece.data, noise);
    }
}
