//! Deflate by libdeflate: level 6 (`default`) gives zlib's level-9 size several times faster,
//! level 12 (`best`) a smaller stream by near-optimal parsing. libdeflate compresses whole
//! buffers only, each one a complete stream whose last block is marked final. To lay chunks end to end as one stream, a
//! chunk that is not the file's last has that mark cleared and an empty stored block appended (it
//! ends the chunk on a byte boundary, as zlib's sync flush does). Finding the last block needs a
//! walk over the chunk's blocks: the small decoder below reads codes, never writes output.

use std::io;

use libdeflater::{CompressionLvl, Compressor};

pub fn deflate(data: &[u8], last: bool, level: i32) -> io::Result<Vec<u8>> {
    let level = CompressionLvl::new(level)
        .map_err(|e| io::Error::other(format!("libdeflate level {level}: {e:?}")))?;
    let mut compressor = Compressor::new(level);
    let mut out = vec![0u8; compressor.deflate_compress_bound(data.len()) + 8];
    let written = compressor
        .deflate_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))?;
    out.truncate(written);
    if !last {
        continue_stream(&mut out)?;
    }
    Ok(out)
}

/// Turns a complete deflate stream into the start of a longer one.
fn continue_stream(stream: &mut Vec<u8>) -> io::Result<()> {
    let (last_header, end) = walk(stream)?;
    stream[last_header / 8] &= !(1 << (last_header % 8));
    stream.truncate(end.div_ceil(8));
    // An empty stored block: three zero header bits, zeros to the byte boundary, LEN 0, NLEN !0.
    let free_bits = (8 - end % 8) % 8;
    if free_bits < 3 {
        stream.push(0);
    }
    stream.extend_from_slice(&[0, 0, 0xff, 0xff]);
    Ok(())
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    /// The next 56 or more bits, first bit lowest (zeros past the end).
    fn peek(&self) -> u64 {
        let byte = self.pos / 8;
        let mut buf = [0u8; 8];
        let available = self.data.len().saturating_sub(byte).min(8);
        buf[..available].copy_from_slice(&self.data[byte..byte + available]);
        u64::from_le_bytes(buf) >> (self.pos % 8)
    }

    fn skip(&mut self, count: u32) -> io::Result<()> {
        if self.pos + count as usize > self.data.len() * 8 {
            return Err(truncated());
        }
        self.pos += count as usize;
        Ok(())
    }

    fn bit(&mut self) -> io::Result<u32> {
        self.bits(1)
    }

    /// Up to 32 bits, first bit lowest.
    fn bits(&mut self, count: u32) -> io::Result<u32> {
        let value = (self.peek() & ((1u64 << count) - 1)) as u32;
        self.skip(count)?;
        Ok(value)
    }
}

fn truncated() -> io::Error {
    io::Error::other("libdeflate wrote a deflate stream that ends early")
}

fn invalid(what: &str) -> io::Error {
    io::Error::other(format!(
        "libdeflate wrote an invalid deflate stream: {what}"
    ))
}

/// Bits a code is looked up by at once; longer codes (rare) are read one bit at a time.
const FAST_BITS: u32 = 10;

/// A canonical Huffman code, as RFC 1951 defines it from code lengths, with a table that decodes
/// codes of up to [`FAST_BITS`] in one lookup: the walk reads millions of codes per zip.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
    /// Indexed by the next FAST_BITS bits of the stream: (symbol, code length), length 0 when
    /// the code is longer.
    fast: Vec<(u16, u8)>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Huffman {
        let mut count = [0u16; 16];
        for &len in lengths {
            count[len as usize] += 1;
        }
        let mut offset = [0u16; 16];
        for len in 1..15 {
            offset[len + 1] = offset[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbol[offset[len as usize] as usize] = sym as u16;
                offset[len as usize] += 1;
            }
        }
        // The canonical codes, then each short one in every table slot that starts with it
        // (codes come first bit first, so the table is indexed by their reversed bits).
        let mut next = [0u32; 16];
        let mut code = 0u32;
        let mut used = count;
        used[0] = 0;
        for len in 1..16 {
            code = (code + used[len - 1] as u32) << 1;
            next[len] = code;
        }
        let mut fast = vec![(0u16, 0u8); 1 << FAST_BITS];
        for (sym, &len) in lengths.iter().enumerate() {
            let len = len as u32;
            if len == 0 {
                continue;
            }
            let code = next[len as usize];
            next[len as usize] += 1;
            if len > FAST_BITS {
                continue;
            }
            let reversed = code.reverse_bits() >> (32 - len);
            for fill in 0..1u32 << (FAST_BITS - len) {
                fast[(reversed | (fill << len)) as usize] = (sym as u16, len as u8);
            }
        }
        Huffman {
            count,
            symbol,
            fast,
        }
    }

    fn decode(&self, bits: &mut Bits) -> io::Result<u16> {
        let (symbol, len) = self.fast[(bits.peek() & ((1 << FAST_BITS) - 1)) as usize];
        if len != 0 {
            bits.skip(len as u32)?;
            return Ok(symbol);
        }
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.bit()? as i32;
            let count = self.count[len] as i32;
            if code - count < first {
                return Ok(self.symbol[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(invalid("a code that no table holds"))
    }
}

const LENGTH_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The bit position of the last block's header and of the stream's end.
fn walk(data: &[u8]) -> io::Result<(usize, usize)> {
    let mut bits = Bits { data, pos: 0 };
    loop {
        let header = bits.pos;
        let last = bits.bit()? == 1;
        match bits.bits(2)? {
            0 => {
                bits.pos = bits.pos.div_ceil(8) * 8;
                let len = bits.bits(16)?;
                let nlen = bits.bits(16)?;
                if len != !nlen & 0xffff {
                    return Err(invalid("a stored block's length"));
                }
                bits.pos += len as usize * 8;
                if bits.pos > data.len() * 8 {
                    return Err(truncated());
                }
            }
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                codes(&mut bits, &Huffman::new(&lengths), &Huffman::new(&[5; 30]))?;
            }
            2 => {
                let (lengths, distances) = dynamic_tables(&mut bits)?;
                codes(&mut bits, &lengths, &distances)?;
            }
            _ => return Err(invalid("a block of type 3")),
        }
        if last {
            return Ok((header, bits.pos));
        }
    }
}

fn dynamic_tables(bits: &mut Bits) -> io::Result<(Huffman, Huffman)> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlen = bits.bits(5)? as usize + 257;
    let ndist = bits.bits(5)? as usize + 1;
    let ncode = bits.bits(4)? as usize + 4;
    let mut code_lengths = [0u8; 19];
    for &at in &ORDER[..ncode] {
        code_lengths[at] = bits.bits(3)? as u8;
    }
    let code = Huffman::new(&code_lengths);
    let mut lengths = vec![0u8; nlen + ndist];
    let mut index = 0;
    while index < lengths.len() {
        let symbol = code.decode(bits)?;
        if symbol < 16 {
            lengths[index] = symbol as u8;
            index += 1;
            continue;
        }
        let (value, repeat) = match symbol {
            16 => {
                let previous = *lengths
                    .get(index.wrapping_sub(1))
                    .ok_or_else(|| invalid("a repeat with nothing before it"))?;
                (previous, 3 + bits.bits(2)?)
            }
            17 => (0, 3 + bits.bits(3)?),
            _ => (0, 11 + bits.bits(7)?),
        };
        let end = index + repeat as usize;
        lengths
            .get_mut(index..end)
            .ok_or_else(|| invalid("code lengths past the table"))?
            .fill(value);
        index = end;
    }
    Ok((
        Huffman::new(&lengths[..nlen]),
        Huffman::new(&lengths[nlen..]),
    ))
}

fn codes(bits: &mut Bits, lengths: &Huffman, distances: &Huffman) -> io::Result<()> {
    loop {
        let symbol = lengths.decode(bits)?;
        match symbol {
            0..=255 => {}
            256 => return Ok(()),
            _ => {
                let extra = *LENGTH_EXTRA
                    .get(symbol as usize - 257)
                    .ok_or_else(|| invalid("a length symbol over 285"))?;
                bits.skip(extra)?;
                let distance = distances.decode(bits)?;
                let extra = *DISTANCE_EXTRA
                    .get(distance as usize)
                    .ok_or_else(|| invalid("a distance symbol over 29"))?;
                bits.skip(extra)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Stored, fixed and dynamic blocks all continue into the next chunk.
    #[test]
    fn chunks_of_every_block_type_join() {
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(2000);
        let noise = support::noise(20_000, 0x9e37_79b9);
        // A real binary (this test's own), for many dynamic blocks with long codes.
        let binary = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let binary = &binary[..binary.len().min(3 << 20)];
        let pieces: [&[u8]; 6] = [&text, b"ab", &noise, b"", binary, &text[..777]];
        for level in [1, 7, 12] {
            for split_at in 0..pieces.len() {
                let mut stream = Vec::new();
                let mut want = Vec::new();
                for (i, piece) in pieces.iter().enumerate().skip(split_at) {
                    stream.extend(deflate(piece, i + 1 == pieces.len(), level).unwrap());
                    want.extend_from_slice(piece);
                }
                assert!(
                    inflate(&stream) == want,
                    "level {level}, from piece {split_at}"
                );
            }
        }
    }
}
