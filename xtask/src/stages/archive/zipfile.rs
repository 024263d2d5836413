//! A small zip writer that owns every byte it writes, so the archive is the same on every
//! machine and entries can be written from compressed pieces as they come (parallel chunks) or
//! copied raw from another zip (volumes). Names are UTF-8; times are 1980-01-01 00:00; modes and
//! file types are Unix's; ZIP64 is used where a size, an offset or the entry count needs it.

use std::io::{self, Seek, SeekFrom, Write};

/// How an entry's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
}

impl Method {
    fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
        }
    }
}

/// What the central directory records of one entry.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub method: Method,
    pub crc32: u32,
    pub compressed: u64,
    pub uncompressed: u64,
    /// Unix file type and permissions (`0o100644`, `0o040755`, `0o120777`).
    pub unix_mode: u32,
    offset: u64,
    /// Its local header carries ZIP64 sizes (decided before the data is written).
    zip64_local: bool,
}

const U32_MAX: u64 = u32::MAX as u64;
/// DOS date of 1980-01-01 (time 00:00:00 is 0): fixed, so the bytes never depend on when.
const DOS_DATE: u16 = (1 << 5) | 1;
const UTF8_NAMES: u16 = 1 << 11;
const MADE_BY_UNIX: u16 = (3 << 8) | 45;

pub struct ZipWriter<W: Write + Seek> {
    out: W,
    position: u64,
    records: Vec<Record>,
    /// The entry being written, while its data comes.
    open: Option<Record>,
}

impl<W: Write + Seek> ZipWriter<W> {
    pub fn new(out: W) -> ZipWriter<W> {
        ZipWriter {
            out,
            position: 0,
            records: Vec::new(),
            open: None,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    pub fn add_directory(&mut self, name: &str, mode: u32) -> io::Result<()> {
        self.start(name, Method::Stored, 0o040000 | mode, false)?;
        self.finish_entry(0, 0, 0)
    }

    /// A symbolic link: its target, stored, as Unix zip tools write it.
    pub fn add_symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.start(name, Method::Stored, 0o120777, false)?;
        self.put(target.as_bytes())?;
        let crc = crc32fast::hash(target.as_bytes());
        let len = target.len() as u64;
        self.finish_entry(crc, len, len)
    }

    /// A whole entry whose data is at hand (stored or already compressed).
    pub fn add_file(
        &mut self,
        name: &str,
        mode: u32,
        method: Method,
        data: &[u8],
        crc32: u32,
        uncompressed: u64,
    ) -> io::Result<()> {
        let zip64 = uncompressed >= U32_MAX || data.len() as u64 >= U32_MAX;
        self.start(name, method, 0o100000 | mode, zip64)?;
        self.put(data)?;
        self.finish_entry(crc32, data.len() as u64, uncompressed)
    }

    /// Starts a file whose data follows in pieces ([`Self::write_data`]) and whose sizes and CRC
    /// are known at the end ([`Self::finish_entry`]). `zip64` must be set when either size may
    /// reach 4 GiB: the local header's room for them is chosen now.
    pub fn start_file(
        &mut self,
        name: &str,
        mode: u32,
        method: Method,
        zip64: bool,
    ) -> io::Result<()> {
        self.start(name, method, 0o100000 | mode, zip64)
    }

    pub fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        debug_assert!(self.open.is_some(), "no entry is open");
        self.put(data)
    }

    /// The entry started last, to drop it (its header and data are cut off the file).
    pub fn abandon_entry(&mut self) -> io::Result<u64>
    where
        W: Truncate,
    {
        let record = self.open.take().expect("an entry is open");
        self.out.seek(SeekFrom::Start(record.offset))?;
        self.out.truncate_at(record.offset)?;
        self.position = record.offset;
        Ok(record.offset)
    }

    fn start(&mut self, name: &str, method: Method, unix_mode: u32, zip64: bool) -> io::Result<()> {
        debug_assert!(self.open.is_none(), "an entry is still open");
        let record = Record {
            name: name.to_string(),
            method,
            crc32: 0,
            compressed: 0,
            uncompressed: 0,
            unix_mode,
            offset: self.position,
            zip64_local: zip64,
        };
        let header = local_header(&record);
        self.put(&header)?;
        self.open = Some(record);
        Ok(())
    }

    /// Ends the open entry: its CRC and sizes go into its local header (written back) and the
    /// central directory.
    pub fn finish_entry(
        &mut self,
        crc32: u32,
        compressed: u64,
        uncompressed: u64,
    ) -> io::Result<()> {
        let mut record = self.open.take().expect("an entry is open");
        if !record.zip64_local && (compressed >= U32_MAX || uncompressed >= U32_MAX) {
            return Err(io::Error::other(format!(
                "{} reached 4 GiB without ZIP64 room in its header",
                record.name
            )));
        }
        record.crc32 = crc32;
        record.compressed = compressed;
        record.uncompressed = uncompressed;
        if compressed > 0 || uncompressed > 0 || crc32 != 0 {
            let header = local_header(&record);
            let end = self.position;
            self.out.seek(SeekFrom::Start(record.offset))?;
            self.out.write_all(&header)?;
            self.out.seek(SeekFrom::Start(end))?;
        }
        self.records.push(record);
        Ok(())
    }

    /// Copies an entry from another zip as it is: `data` is its compressed bytes.
    pub fn copy_entry(&mut self, from: &Record, data: &mut impl io::Read) -> io::Result<()> {
        let zip64 = from.compressed >= U32_MAX || from.uncompressed >= U32_MAX;
        self.start(&from.name, from.method, from.unix_mode, zip64)?;
        let copied = io::copy(
            &mut io::Read::take(data, from.compressed),
            &mut CountingWrite(self),
        )?;
        if copied != from.compressed {
            return Err(io::Error::other(format!("{} is cut short", from.name)));
        }
        self.finish_entry(from.crc32, from.compressed, from.uncompressed)
    }

    /// Writes the central directory and its end, and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let start = self.position;
        let records = std::mem::take(&mut self.records);
        for record in &records {
            let header = central_header(record);
            self.put(&header)?;
        }
        let size = self.position - start;
        let count = records.len() as u64;
        let zip64 = count >= 0xffff || start >= U32_MAX || size >= U32_MAX;
        if zip64 {
            let record_at = self.position;
            let mut end = Vec::with_capacity(56 + 20);
            end.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            end.extend_from_slice(&44u64.to_le_bytes());
            end.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
            end.extend_from_slice(&45u16.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&size.to_le_bytes());
            end.extend_from_slice(&start.to_le_bytes());
            // The locator.
            end.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&record_at.to_le_bytes());
            end.extend_from_slice(&1u32.to_le_bytes());
            self.put(&end)?;
        }
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        let short_count = count.min(0xffff) as u16;
        end.extend_from_slice(&short_count.to_le_bytes());
        end.extend_from_slice(&short_count.to_le_bytes());
        end.extend_from_slice(&(size.min(U32_MAX) as u32).to_le_bytes());
        end.extend_from_slice(&(start.min(U32_MAX) as u32).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.put(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Cutting a file back, for an entry that is written again differently.
pub trait Truncate {
    fn truncate_at(&mut self, len: u64) -> io::Result<()>;
}

impl Truncate for std::io::BufWriter<std::fs::File> {
    fn truncate_at(&mut self, len: u64) -> io::Result<()> {
        self.flush()?;
        self.get_ref().set_len(len)
    }
}

struct CountingWrite<'a, W: Write + Seek>(&'a mut ZipWriter<W>);

impl<W: Write + Seek> Write for CountingWrite<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.put(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn version_needed(zip64: bool, method: Method) -> u16 {
    if zip64 {
        45
    } else if method == Method::Deflated {
        20
    } else {
        10
    }
}

fn local_header(r: &Record) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + r.name.len() + 20);
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&version_needed(r.zip64_local, r.method).to_le_bytes());
    h.extend_from_slice(&UTF8_NAMES.to_le_bytes());
    h.extend_from_slice(&r.method.code().to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&r.crc32.to_le_bytes());
    if r.zip64_local {
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        h.extend_from_slice(&u32::MAX.to_le_bytes());
    } else {
        h.extend_from_slice(&(r.compressed as u32).to_le_bytes());
        h.extend_from_slice(&(r.uncompressed as u32).to_le_bytes());
    }
    h.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(if r.zip64_local { 20u16 } else { 0 }).to_le_bytes());
    h.extend_from_slice(r.name.as_bytes());
    if r.zip64_local {
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(&r.uncompressed.to_le_bytes());
        h.extend_from_slice(&r.compressed.to_le_bytes());
    }
    h
}

fn central_header(r: &Record) -> Vec<u8> {
    // ZIP64 fields, in the order the format fixes, for each value that does not fit.
    let mut extra = Vec::new();
    if r.uncompressed >= U32_MAX {
        extra.extend_from_slice(&r.uncompressed.to_le_bytes());
    }
    if r.compressed >= U32_MAX {
        extra.extend_from_slice(&r.compressed.to_le_bytes());
    }
    if r.offset >= U32_MAX {
        extra.extend_from_slice(&r.offset.to_le_bytes());
    }
    let zip64 = !extra.is_empty() || r.zip64_local;
    let dos_dir = if r.unix_mode & 0o170000 == 0o040000 {
        0x10
    } else {
        0
    };
    let mut h = Vec::with_capacity(46 + r.name.len() + extra.len() + 4);
    h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    h.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
    h.extend_from_slice(&version_needed(zip64, r.method).to_le_bytes());
    h.extend_from_slice(&UTF8_NAMES.to_le_bytes());
    h.extend_from_slice(&r.method.code().to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&r.crc32.to_le_bytes());
    h.extend_from_slice(&(r.compressed.min(U32_MAX) as u32).to_le_bytes());
    h.extend_from_slice(&(r.uncompressed.min(U32_MAX) as u32).to_le_bytes());
    h.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
    let extra_len = if extra.is_empty() { 0 } else { extra.len() + 4 };
    h.extend_from_slice(&(extra_len as u16).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&((r.unix_mode << 16) | dos_dir).to_le_bytes());
    h.extend_from_slice(&(r.offset.min(U32_MAX) as u32).to_le_bytes());
    h.extend_from_slice(r.name.as_bytes());
    if !extra.is_empty() {
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        h.extend_from_slice(&extra);
    }
    h
}

impl Record {
    /// An entry as another zip's reader describes it, for [`ZipWriter::copy_entry`].
    pub fn copied(
        name: String,
        method: Method,
        crc32: u32,
        compressed: u64,
        uncompressed: u64,
        unix_mode: u32,
    ) -> Record {
        Record {
            name,
            method,
            crc32,
            compressed,
            uncompressed,
            unix_mode,
            offset: 0,
            zip64_local: false,
        }
    }

    /// Bytes the entry takes in a zip: its local header, its data and its central record.
    pub fn footprint(&self) -> u64 {
        let zip64 = self.compressed >= U32_MAX || self.uncompressed >= U32_MAX;
        let name = self.name.len() as u64;
        (30 + name + if zip64 { 20 } else { 0 }) + self.compressed + (46 + name + 28)
    }
}
