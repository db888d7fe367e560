//! Capture files in the classic libpcap format (not pcapng), read and written
//! by hand.
//!
//! [`PcapReader`] and [`PcapWriter`] are the file format alone, for tools and
//! tests. [`PcapPort`] puts them behind the [`Port`] trait: a read port has
//! one receive queue that delivers the file's frames (as fast as possible, or
//! at the pace they were recorded, optionally in a loop); a write port has
//! one transmit queue that appends every transmitted frame with the current
//! time.
//!
//! Reading accepts both byte orders and both timestamp resolutions
//! (microseconds, magic 0xa1b2c3d4, and nanoseconds, 0xa1b23c4d), and only
//! Ethernet captures. Writing always produces little-endian, nanosecond files.
//!
//! Damage is counted, never a panic: a record longer than a packet buffer
//! ([`DATA_ROOM`](crate::buf::DATA_ROOM)) is skipped and a record the file ends inside of ends the
//! file; each counts one `rx_dropped`. A record whose length no capture can
//! have (over [`MAX_CAPLEN`], libpcap's own limit) means the rest of the file
//! cannot be framed: it also ends the file, with one `rx_dropped`.

use super::{bump, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, Packet, PoolCache};
use core::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The link type of Ethernet captures, the only one supported.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The largest record libpcap accepts for any link type.
pub const MAX_CAPLEN: u32 = 262_144;
/// The snapshot length written when nothing else is asked for.
pub const DEFAULT_SNAPLEN: u32 = 65_535;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// The first word of a pcapng file (its section header block type).
const MAGIC_PCAPNG: u32 = 0x0a0d_0d0a;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
/// The link-type word's high bits say whether frames end in an FCS.
const LINKTYPE_FCS_PRESENT: u32 = 1 << 26;
const IO_BUFFER: usize = 256 * 1024;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// One record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapRecord {
    /// Nanoseconds since the Unix epoch (whatever the file's resolution).
    pub ts_ns: u64,
    /// Bytes of the frame stored in the file.
    pub caplen: u32,
    /// Bytes the frame had on the wire.
    pub orig_len: u32,
}

/// Why a record could not be read. Records are numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcapError {
    /// The file ends inside this record.
    Truncated { file: String, record: u64 },
    /// The record claims more bytes than any capture holds.
    BadCaplen {
        file: String,
        record: u64,
        caplen: u32,
    },
    /// Reading failed.
    Io { file: String, message: String },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Truncated { file, record } => {
                write!(f, "{file}: record {record} is cut short (the file ends inside it)")
            }
            PcapError::BadCaplen { file, record, caplen } => write!(
                f,
                "{file}: record {record} claims {caplen} captured bytes; at most {MAX_CAPLEN} are possible"
            ),
            PcapError::Io { file, message } => write!(f, "{file}: read failed: {message}"),
        }
    }
}

impl std::error::Error for PcapError {}

impl From<PcapError> for PortError {
    fn from(e: PcapError) -> PortError {
        PortError::Backend(e.to_string())
    }
}

/// Reads a classic pcap stream record by record.
///
/// As an iterator it yields `(timestamp_ns, frame)` and stops after the
/// first error. [`PcapReader::read_record`] reads into a reused buffer.
pub struct PcapReader<R> {
    input: R,
    name: String,
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    link_type: u32,
    /// Records whose header has been read.
    records: u64,
    /// Frame bytes of the current record not yet consumed.
    unread: u32,
    failed: bool,
}

impl PcapReader<BufReader<File>> {
    /// Opens a capture file and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PortError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| PortError::Backend(format!("{name}: cannot open the capture: {e}")))?;
        PcapReader::new(BufReader::with_capacity(IO_BUFFER, file), &name)
    }
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header from `input`; `name` appears in errors.
    pub fn new(mut input: R, name: &str) -> Result<Self, PortError> {
        let mut header = [0u8; FILE_HEADER_LEN];
        input.read_exact(&mut header).map_err(|e| {
            PortError::Backend(match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    format!("{name}: too short for a pcap file header ({FILE_HEADER_LEN} bytes)")
                }
                _ => format!("{name}: read failed: {e}"),
            })
        })?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (big_endian, nanos) = match magic {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m == MAGIC_MICROS.swap_bytes() => (true, false),
            m if m == MAGIC_NANOS.swap_bytes() => (true, true),
            MAGIC_PCAPNG => {
                return Err(PortError::Backend(format!(
                    "{name}: is a pcapng file; only classic pcap is supported (convert it with `editcap -F pcap`)"
                )))
            }
            m => {
                return Err(PortError::Backend(format!(
                    "{name}: not a pcap file (magic {m:#010x}, expected 0xa1b2c3d4 or 0xa1b23c4d)"
                )))
            }
        };
        let mut reader = PcapReader {
            input,
            name: name.to_string(),
            big_endian,
            nanos,
            snaplen: 0,
            link_type: 0,
            records: 0,
            unread: 0,
            failed: false,
        };
        let major = reader.u16_at(&header, 4);
        if major != 2 {
            return Err(PortError::Backend(format!(
                "{name}: pcap format version {major}.{}; only version 2 is supported",
                reader.u16_at(&header, 6)
            )));
        }
        // The snapshot length is advisory: writers often put 0 or 65535
        // there whatever they capture, so records are checked on their own.
        reader.snaplen = reader.u32_at(&header, 16);
        let link = reader.u32_at(&header, 20);
        reader.link_type = link & 0xffff;
        if link & LINKTYPE_FCS_PRESENT != 0 {
            return Err(PortError::Backend(format!(
                "{name}: frames carry a frame check sequence, which is not supported"
            )));
        }
        Ok(reader)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The link type (1 for Ethernet).
    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    /// The snapshot length the file header states.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// True for nanosecond timestamps, false for microseconds.
    pub fn is_nanosecond(&self) -> bool {
        self.nanos
    }

    /// Reads the next record into `buf` (resized to the frame). `Ok(None)`
    /// at the end of the file. After an error the reader is at an unknown
    /// position; stop reading.
    pub fn read_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<PcapRecord>, PcapError> {
        let Some(record) = self.next_header()? else {
            return Ok(None);
        };
        buf.resize(record.caplen as usize, 0);
        self.read_data(buf)?;
        Ok(Some(record))
    }

    /// Reads the next record header, skipping whatever of the previous
    /// record's frame was not read.
    pub(crate) fn next_header(&mut self) -> Result<Option<PcapRecord>, PcapError> {
        if self.unread > 0 {
            self.skip_data()?;
        }
        let mut header = [0u8; RECORD_HEADER_LEN];
        let got = read_full(&mut self.input, &mut header).map_err(|e| self.io_error(e))?;
        if got == 0 {
            return Ok(None);
        }
        self.records += 1;
        if got < RECORD_HEADER_LEN {
            return Err(self.truncated());
        }
        let secs = self.u32_at(&header, 0) as u64;
        let frac = self.u32_at(&header, 4) as u64;
        let caplen = self.u32_at(&header, 8);
        let orig_len = self.u32_at(&header, 12);
        if caplen > MAX_CAPLEN {
            return Err(PcapError::BadCaplen {
                file: self.name.clone(),
                record: self.records,
                caplen,
            });
        }
        self.unread = caplen;
        let frac_ns = if self.nanos { frac } else { frac * 1000 };
        Ok(Some(PcapRecord {
            ts_ns: secs * NANOS_PER_SEC + frac_ns,
            caplen,
            orig_len,
        }))
    }

    /// Reads the current record's frame; `buf` must be `caplen` bytes long.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> Result<(), PcapError> {
        debug_assert_eq!(buf.len(), self.unread as usize);
        self.unread = 0;
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.truncated(),
            _ => self.io_error(e),
        })
    }

    /// Skips the rest of the current record's frame.
    pub(crate) fn skip_data(&mut self) -> Result<(), PcapError> {
        let want = u64::from(self.unread);
        self.unread = 0;
        let skipped = io::copy(&mut (&mut self.input).take(want), &mut io::sink())
            .map_err(|e| self.io_error(e))?;
        if skipped < want {
            return Err(self.truncated());
        }
        Ok(())
    }

    fn truncated(&self) -> PcapError {
        PcapError::Truncated {
            file: self.name.clone(),
            record: self.records,
        }
    }

    fn io_error(&self, e: io::Error) -> PcapError {
        PcapError::Io {
            file: self.name.clone(),
            message: e.to_string(),
        }
    }

    fn u16_at(&self, bytes: &[u8], at: usize) -> u16 {
        let b = [bytes[at], bytes[at + 1]];
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> u32 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

impl<R: Read + Seek> PcapReader<R> {
    /// Goes back to the first record.
    pub fn rewind(&mut self) -> Result<(), PcapError> {
        self.input
            .seek(SeekFrom::Start(FILE_HEADER_LEN as u64))
            .map_err(|e| self.io_error(e))?;
        self.records = 0;
        self.unread = 0;
        self.failed = false;
        Ok(())
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<(u64, Vec<u8>), PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut frame = Vec::new();
        match self.read_record(&mut frame) {
            Ok(Some(record)) => Some(Ok((record.ts_ns, frame))),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes a little-endian, nanosecond-resolution Ethernet capture.
pub struct PcapWriter<W: Write> {
    out: W,
    name: String,
    snaplen: u32,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (or truncates) a capture file and writes its header.
    pub fn create(path: impl AsRef<Path>, snaplen: u32) -> Result<Self, PortError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::create(path)
            .map_err(|e| PortError::Backend(format!("{name}: cannot create the capture: {e}")))?;
        PcapWriter::new(BufWriter::with_capacity(IO_BUFFER, file), &name, snaplen)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `out`. Frames longer than `snaplen` are
    /// stored cut to it (with their original length recorded). `name`
    /// appears in errors.
    pub fn new(mut out: W, name: &str, snaplen: u32) -> Result<Self, PortError> {
        if snaplen == 0 || snaplen > MAX_CAPLEN {
            return Err(PortError::Backend(format!(
                "{name}: snaplen {snaplen} is out of range (1 to {MAX_CAPLEN})"
            )));
        }
        let mut header = [0u8; FILE_HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        header[16..20].copy_from_slice(&snaplen.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header).map_err(|e| write_error(name, e))?;
        Ok(PcapWriter {
            out,
            name: name.to_string(),
            snaplen,
        })
    }

    /// Appends one frame taken at `ts_ns` nanoseconds since the Unix epoch.
    pub fn write_record(&mut self, ts_ns: u64, frame: &[u8]) -> Result<(), PortError> {
        let caplen = frame.len().min(self.snaplen as usize);
        let mut header = [0u8; RECORD_HEADER_LEN];
        // Seconds wrap in 2106, as the format's 32-bit field does.
        header[0..4].copy_from_slice(&((ts_ns / NANOS_PER_SEC) as u32).to_le_bytes());
        header[4..8].copy_from_slice(&((ts_ns % NANOS_PER_SEC) as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out
            .write_all(&header)
            .and_then(|()| self.out.write_all(&frame[..caplen]))
            .map_err(|e| write_error(&self.name, e))
    }

    pub fn flush(&mut self) -> Result<(), PortError> {
        self.out.flush().map_err(|e| write_error(&self.name, e))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer (not flushed; a `BufWriter` flushes on drop).
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn write_error(name: &str, e: io::Error) -> PortError {
    PortError::Backend(format!("{name}: write failed: {e}"))
}

/// How a read port paces its frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// Every burst delivers as many frames as fit.
    AsFastAsPossible,
    /// A frame is delivered once the time since the first receive call
    /// reaches its offset from the first record, divided by `speed` (2.0
    /// replays twice as fast). Receive calls never wait: before a frame is
    /// due they return nothing.
    Recorded { speed: f64 },
}

/// How to open a capture for reading.
#[derive(Debug, Clone, PartialEq)]
pub struct PcapReadConfig {
    /// Stamped into `Packet::rx_port`.
    pub port_id: u16,
    pub timing: Timing,
    /// Start over at the end of the file. A looped capture continues its
    /// timeline: the first record of a new pass is due with the last record
    /// of the previous one.
    pub repeat: bool,
}

impl Default for PcapReadConfig {
    fn default() -> Self {
        PcapReadConfig {
            port_id: 0,
            timing: Timing::AsFastAsPossible,
            repeat: false,
        }
    }
}

/// How to create a capture for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapWriteConfig {
    /// Frames longer than this are stored cut short.
    pub snaplen: u32,
}

impl Default for PcapWriteConfig {
    fn default() -> Self {
        PcapWriteConfig {
            snaplen: DEFAULT_SNAPLEN,
        }
    }
}

/// A capture file as a port: receive-only (one queue) when opened with
/// [`PcapPort::open_read`], transmit-only (one queue) when made with
/// [`PcapPort::create_write`].
pub struct PcapPort {
    shared: Arc<PcapShared>,
    rx_queues: u16,
    tx_queues: u16,
}

struct PcapShared {
    name: String,
    counters: QueueCounters,
    /// The receive state while no handle holds it.
    reader: Mutex<Option<ReadState>>,
    /// The writer while no handle holds it.
    writer: Mutex<Option<PcapWriter<BufWriter<File>>>>,
    /// The last read or write failure.
    error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PcapShared {
    #[cold]
    fn record_error(&self, message: String) {
        *lock(&self.error) = Some(message);
    }
}

impl PcapPort {
    /// Opens a capture for reading. Fails if the file cannot be opened, is
    /// not a classic pcap file, is not an Ethernet capture, or the replay
    /// speed is not a positive number.
    pub fn open_read(
        path: impl AsRef<Path>,
        cfg: PcapReadConfig,
    ) -> Result<Arc<PcapPort>, PortError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let speed = match cfg.timing {
            Timing::AsFastAsPossible => None,
            Timing::Recorded { speed } if speed.is_finite() && speed > 0.0 => Some(speed),
            Timing::Recorded { speed } => {
                return Err(PortError::Backend(format!(
                    "{name}: replay speed must be a positive number, not {speed}"
                )))
            }
        };
        let reader = PcapReader::open(path)?;
        if reader.link_type() != LINKTYPE_ETHERNET {
            return Err(PortError::Backend(format!(
                "{name}: link type {} is not supported; only Ethernet ({LINKTYPE_ETHERNET}) is",
                reader.link_type()
            )));
        }
        let state = ReadState {
            reader,
            port_id: cfg.port_id,
            speed,
            repeat: cfg.repeat,
            start: None,
            first_ts: None,
            pass_base_ns: 0,
            last_due_ns: 0,
            pending: None,
            delivered_this_pass: 0,
            finished: false,
        };
        Ok(Arc::new(PcapPort {
            shared: Arc::new(PcapShared {
                name,
                counters: QueueCounters::default(),
                reader: Mutex::new(Some(state)),
                writer: Mutex::new(None),
                error: Mutex::new(None),
            }),
            rx_queues: 1,
            tx_queues: 0,
        }))
    }

    /// Creates (or truncates) a capture for writing.
    pub fn create_write(
        path: impl AsRef<Path>,
        cfg: PcapWriteConfig,
    ) -> Result<Arc<PcapPort>, PortError> {
        let writer = PcapWriter::create(path, cfg.snaplen)?;
        Ok(Arc::new(PcapPort {
            shared: Arc::new(PcapShared {
                name: writer.name().to_string(),
                counters: QueueCounters::default(),
                reader: Mutex::new(None),
                writer: Mutex::new(Some(writer)),
                error: Mutex::new(None),
            }),
            rx_queues: 0,
            tx_queues: 1,
        }))
    }

    /// The last read or write failure, if any (failures end reading; failed
    /// writes count as `tx_dropped`).
    pub fn error(&self) -> Option<String> {
        lock(&self.shared.error).clone()
    }

    fn check_queue(&self, queue: u16, queues: u16) -> Result<(), PortError> {
        if queue >= queues {
            return Err(PortError::NoSuchQueue {
                port: self.shared.name.clone(),
                queue,
                queues,
            });
        }
        Ok(())
    }

    fn taken(&self, queue: u16) -> PortError {
        PortError::QueueTaken {
            port: self.shared.name.clone(),
            queue,
        }
    }
}

impl Port for PcapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.shared.name.clone(),
            driver: "pcap",
            mac: [0; 6],
            mtu: 1500,
            rx_queues: self.rx_queues,
            tx_queues: self.tx_queues,
            link_up: true,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        self.shared.counters.snapshot()
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        self.check_queue(queue, self.rx_queues)?;
        let state = lock(&self.shared.reader)
            .take()
            .ok_or_else(|| self.taken(queue))?;
        Ok(Box::new(PcapRx {
            shared: self.shared.clone(),
            state: Some(state),
        }))
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        self.check_queue(queue, self.tx_queues)?;
        let writer = lock(&self.shared.writer)
            .take()
            .ok_or_else(|| self.taken(queue))?;
        Ok(Box::new(PcapTx {
            shared: self.shared.clone(),
            writer: Some(writer),
        }))
    }
}

impl fmt::Debug for PcapPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapPort")
            .field("name", &self.shared.name)
            .field("rx_queues", &self.rx_queues)
            .field("tx_queues", &self.tx_queues)
            .finish()
    }
}

/// Where reading a capture stands.
struct ReadState {
    reader: PcapReader<BufReader<File>>,
    port_id: u16,
    /// `None`: as fast as possible.
    speed: Option<f64>,
    repeat: bool,
    /// When the first receive call happened (recorded timing).
    start: Option<Instant>,
    /// The timestamp of the file's first record.
    first_ts: Option<u64>,
    /// When (after `start`) the current pass of a looped file begins.
    pass_base_ns: u64,
    last_due_ns: u64,
    /// A frame read but not yet due, with the time it is due.
    pending: Option<(Packet, u64)>,
    delivered_this_pass: u64,
    finished: bool,
}

/// The outcome of reading one record into a packet.
enum Step {
    /// A frame with this timestamp.
    Frame(u64),
    /// A record too long for a buffer, skipped.
    Skipped,
    /// The end of the file, clean.
    End,
    /// The end of the file, inside a damaged record.
    EndDamaged,
    /// Reading failed; the message says why.
    Failed(String),
}

impl ReadState {
    fn burst(&mut self, pool: &mut PoolCache, out: &mut Batch, shared: &PcapShared) -> usize {
        let now_ns = self.speed.map(|_| {
            let start = *self.start.get_or_insert_with(Instant::now);
            start.elapsed().as_nanos() as u64
        });
        let mut n = 0;
        let mut bytes = 0;
        let mut dropped = 0;
        while !out.is_full() {
            let next = match self.pending.take() {
                Some(pending) => Some(pending),
                None => self.next_frame(pool, &mut dropped, shared),
            };
            let Some((mut pkt, due)) = next else {
                break;
            };
            if now_ns.is_some_and(|now| due > now) {
                self.pending = Some((pkt, due));
                break;
            }
            pkt.rx_port = self.port_id;
            pkt.rx_queue = 0;
            pkt.rss_hash = 0;
            bytes += pkt.len();
            out.push(pkt);
            n += 1;
        }
        let counters = &shared.counters;
        if n > 0 {
            bump(&counters.rx_packets, n as u64);
            bump(&counters.rx_bytes, bytes as u64);
        }
        if dropped > 0 {
            bump(&counters.rx_dropped, dropped);
        }
        n
    }

    /// The next frame in a fresh buffer, and when it is due.
    fn next_frame(
        &mut self,
        pool: &mut PoolCache,
        dropped: &mut u64,
        shared: &PcapShared,
    ) -> Option<(Packet, u64)> {
        if self.finished {
            return None;
        }
        // Take the buffer first so that an empty pool loses no record.
        let mut pkt = pool.alloc()?;
        loop {
            match self.read_into(&mut pkt) {
                Step::Frame(ts) => {
                    let first = *self.first_ts.get_or_insert(ts);
                    let offset = ts.saturating_sub(first);
                    let due = match self.speed {
                        Some(speed) => self.pass_base_ns + (offset as f64 / speed) as u64,
                        None => 0,
                    };
                    self.last_due_ns = due;
                    self.delivered_this_pass += 1;
                    return Some((pkt, due));
                }
                Step::Skipped => {
                    *dropped += 1;
                    continue;
                }
                Step::End => {}
                Step::EndDamaged => *dropped += 1,
                Step::Failed(message) => {
                    shared.record_error(message);
                    self.finished = true;
                    pool.free(pkt);
                    return None;
                }
            }
            // A pass that delivered nothing would loop forever.
            if self.repeat && self.delivered_this_pass > 0 {
                match self.reader.rewind() {
                    Ok(()) => {
                        self.pass_base_ns = self.last_due_ns;
                        self.delivered_this_pass = 0;
                        continue;
                    }
                    Err(e) => shared.record_error(e.to_string()),
                }
            }
            self.finished = true;
            pool.free(pkt);
            return None;
        }
    }

    fn read_into(&mut self, pkt: &mut Packet) -> Step {
        let record = match self.reader.next_header() {
            Ok(Some(record)) => record,
            Ok(None) => return Step::End,
            Err(PcapError::Io { file, message }) => {
                return Step::Failed(PcapError::Io { file, message }.to_string())
            }
            Err(_) => return Step::EndDamaged,
        };
        let result = match pkt.reset(record.caplen as usize) {
            Some(frame) => self
                .reader
                .read_data(frame)
                .map(|()| Step::Frame(record.ts_ns)),
            None => self.reader.skip_data().map(|()| Step::Skipped),
        };
        match result {
            Ok(step) => step,
            Err(e @ PcapError::Io { .. }) => Step::Failed(e.to_string()),
            Err(_) => Step::EndDamaged,
        }
    }
}

/// The receive queue of a read port.
struct PcapRx {
    shared: Arc<PcapShared>,
    /// Always `Some` until drop, which hands it back to the port.
    state: Option<ReadState>,
}

impl RxQueue for PcapRx {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        match self.state.as_mut() {
            Some(state) => state.burst(pool, out, &self.shared),
            None => 0,
        }
    }
}

impl Drop for PcapRx {
    fn drop(&mut self) {
        *lock(&self.shared.reader) = self.state.take();
    }
}

/// The transmit queue of a write port.
struct PcapTx {
    shared: Arc<PcapShared>,
    /// Always `Some` until drop, which flushes it and hands it back.
    writer: Option<PcapWriter<BufWriter<File>>>,
}

impl TxQueue for PcapTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let Some(writer) = self.writer.as_mut() else {
            return 0;
        };
        // One clock read per burst: a burst leaves at one instant.
        let ts_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let taken = pkts.len();
        let mut written = 0;
        let mut bytes = 0;
        for pkt in pkts.drain(..) {
            match writer.write_record(ts_ns, pkt.data()) {
                Ok(()) => {
                    written += 1;
                    bytes += pkt.len();
                }
                Err(e) => self.shared.record_error(e.to_string()),
            }
            pool.free(pkt);
        }
        let counters = &self.shared.counters;
        bump(&counters.tx_packets, written);
        bump(&counters.tx_bytes, bytes as u64);
        if written < taken as u64 {
            bump(&counters.tx_dropped, taken as u64 - written);
        }
        taken
    }

    fn flush(&mut self) {
        if let Some(Err(e)) = self.writer.as_mut().map(PcapWriter::flush) {
            self.shared.record_error(e.to_string());
        }
    }
}

impl Drop for PcapTx {
    fn drop(&mut self) {
        self.flush();
        *lock(&self.shared.writer) = self.writer.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PacketPool;
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::time::Duration;

    /// A file in the temp directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            TempFile(
                std::env::temp_dir().join(format!("sluice-pcap-{}-{tag}.pcap", std::process::id())),
            )
        }

        fn with(tag: &str, bytes: &[u8]) -> TempFile {
            let f = TempFile::new(tag);
            std::fs::write(&f.0, bytes).unwrap();
            f
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A capture built by hand: `records` are (seconds, fraction, caplen,
    /// orig_len, bytes).
    fn capture(
        big_endian: bool,
        magic: u32,
        snaplen: u32,
        link: u32,
        records: &[(u32, u32, u32, u32, &[u8])],
    ) -> Vec<u8> {
        let word = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let half = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&word(magic));
        f.extend_from_slice(&half(2));
        f.extend_from_slice(&half(4));
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&word(snaplen));
        f.extend_from_slice(&word(link));
        for &(secs, frac, caplen, orig, bytes) in records {
            for v in [secs, frac, caplen, orig] {
                f.extend_from_slice(&word(v));
            }
            f.extend_from_slice(bytes);
        }
        f
    }

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    fn read_all(port: &PcapPort, cache: &mut PoolCache) -> Vec<Vec<u8>> {
        let mut rx = port.rx_queue(0).unwrap();
        let mut batch = Batch::new();
        let mut frames = Vec::new();
        while rx.rx_burst(cache, &mut batch) > 0 {
            for p in batch.drain(..) {
                frames.push(p.data().to_vec());
                cache.free(p);
            }
        }
        frames
    }

    #[test]
    fn golden_bytes_written_and_read_back() {
        let mut w = PcapWriter::new(Vec::new(), "golden", DEFAULT_SNAPLEN).unwrap();
        w.write_record(
            1_700_000_000_123_456_789,
            &[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02],
        )
        .unwrap();
        let bytes = w.into_inner();
        #[rustfmt::skip]
        let golden: [u8; 24 + 16 + 6] = [
            0x4d, 0x3c, 0xb2, 0xa1, // nanosecond magic, little-endian
            0x02, 0x00, 0x04, 0x00, // version 2.4
            0x00, 0x00, 0x00, 0x00, // thiszone
            0x00, 0x00, 0x00, 0x00, // sigfigs
            0xff, 0xff, 0x00, 0x00, // snaplen 65535
            0x01, 0x00, 0x00, 0x00, // LINKTYPE_ETHERNET
            0x00, 0xf1, 0x53, 0x65, // 1_700_000_000 s
            0x15, 0xcd, 0x5b, 0x07, // 123_456_789 ns
            0x06, 0x00, 0x00, 0x00, // caplen
            0x06, 0x00, 0x00, 0x00, // orig_len
            0xde, 0xad, 0xbe, 0xef, 0x01, 0x02,
        ];
        assert_eq!(bytes, golden);

        let mut r = PcapReader::new(Cursor::new(&bytes), "golden").unwrap();
        assert!(r.is_nanosecond() && !r.is_big_endian());
        assert_eq!((r.snaplen(), r.link_type()), (65535, LINKTYPE_ETHERNET));
        let mut buf = Vec::new();
        let rec = r.read_record(&mut buf).unwrap().unwrap();
        assert_eq!(
            rec,
            PcapRecord {
                ts_ns: 1_700_000_000_123_456_789,
                caplen: 6,
                orig_len: 6
            }
        );
        assert_eq!(buf, [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02]);
        assert_eq!(r.read_record(&mut buf), Ok(None));
    }

    #[test]
    fn both_byte_orders_and_resolutions() {
        let a = frame(1, 60);
        let b = frame(2, 70);
        let records: [(u32, u32, u32, u32, &[u8]); 2] =
            [(100, 250, 60, 60, &a), (101, 999_999, 70, 1514, &b)];
        for big_endian in [false, true] {
            for (magic, unit) in [(MAGIC_MICROS, 1000), (MAGIC_NANOS, 1)] {
                let bytes = capture(big_endian, magic, 65535, 1, &records);
                let r = PcapReader::new(Cursor::new(bytes), "t").unwrap();
                assert_eq!(r.is_big_endian(), big_endian);
                assert_eq!(r.is_nanosecond(), unit == 1);
                let got: Vec<(u64, Vec<u8>)> = r.map(Result::unwrap).collect();
                assert_eq!(
                    got,
                    [
                        (100 * NANOS_PER_SEC + 250 * unit, a.clone()),
                        (101 * NANOS_PER_SEC + 999_999 * unit, b.clone()),
                    ]
                );
            }
        }
    }

    #[test]
    fn snaplen_cuts_written_frames() {
        let mut w = PcapWriter::new(Vec::new(), "t", 64).unwrap();
        w.write_record(5, &frame(3, 100)).unwrap();
        let mut r = PcapReader::new(Cursor::new(w.into_inner()), "t").unwrap();
        let mut buf = Vec::new();
        let rec = r.read_record(&mut buf).unwrap().unwrap();
        assert_eq!((rec.caplen, rec.orig_len, buf.len()), (64, 100, 64));
        assert!(PcapWriter::new(Vec::new(), "t", 0).is_err());
        assert!(PcapWriter::new(Vec::new(), "t", MAX_CAPLEN + 1).is_err());
    }

    #[test]
    fn truncated_files_end_cleanly_with_a_counted_drop() {
        let a = frame(1, 60);
        let b = frame(2, 64);
        let full = capture(
            false,
            MAGIC_NANOS,
            65535,
            1,
            &[(1, 0, 60, 60, &a), (2, 0, 64, 64, &b)],
        );
        let first_end = 24 + 16 + 60;
        for cut in 0..full.len() {
            let bytes = &full[..cut];
            let Ok(r) = PcapReader::new(Cursor::new(bytes), "cut") else {
                assert!(cut < 24, "header refused at {cut}");
                continue;
            };
            let got: Vec<_> = r.collect();
            let complete = usize::from(cut >= first_end);
            let damaged = cut != 24 && cut != first_end;
            assert_eq!(got.len(), complete + usize::from(damaged), "cut at {cut}");
            if damaged {
                let record = complete as u64 + 1;
                assert_eq!(
                    got.last().unwrap().as_ref().unwrap_err(),
                    &PcapError::Truncated {
                        file: "cut".into(),
                        record
                    },
                    "cut at {cut}"
                );
            }
        }

        let short = TempFile::with("short", &full[..10]);
        let err = PcapPort::open_read(&short.0, PcapReadConfig::default()).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");

        let pool = PacketPool::new("t", 64);
        let mut cache = pool.cache(64);
        let file = TempFile::with("truncated", &full[..full.len() - 5]);
        let port = PcapPort::open_read(&file.0, PcapReadConfig::default()).unwrap();
        assert_eq!(read_all(&port, &mut cache), [a]);
        let stats = port.stats();
        assert_eq!((stats.rx_packets, stats.rx_dropped), (1, 1));
        drop(port);
        drop(cache);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn bogus_snaplen_and_caplen() {
        let a = frame(1, 60);
        let big = frame(9, 3000);
        // A snaplen of 0 in the header is ignored; a record over DATA_ROOM
        // is skipped and counted; the next one is delivered.
        let bytes = capture(
            false,
            MAGIC_MICROS,
            0,
            1,
            &[(1, 0, 3000, 3000, &big), (1, 5, 60, 60, &a)],
        );
        let file = TempFile::with("oversize", &bytes);
        let pool = PacketPool::new("t", 64);
        let mut cache = pool.cache(64);
        let port = PcapPort::open_read(&file.0, PcapReadConfig::default()).unwrap();
        assert_eq!(read_all(&port, &mut cache), std::slice::from_ref(&a));
        assert_eq!(port.stats().rx_dropped, 1);

        // A caplen no capture can have: the reader stops with an error that
        // names the file; the port counts one drop and ends.
        let bytes = capture(
            true,
            MAGIC_NANOS,
            u32::MAX,
            1,
            &[(1, 0, 60, 60, &a), (1, 0, 0xffff_fff0, 60, &a)],
        );
        let got: Vec<_> = PcapReader::new(Cursor::new(&bytes), "bogus")
            .unwrap()
            .collect();
        assert_eq!(got.len(), 2);
        let err = got[1].as_ref().unwrap_err();
        assert!(matches!(
            err,
            PcapError::BadCaplen {
                record: 2,
                caplen: 0xffff_fff0,
                ..
            }
        ));
        assert!(err.to_string().starts_with("bogus: record 2"), "{err}");

        let file = TempFile::with("bogus", &bytes);
        let port = PcapPort::open_read(&file.0, PcapReadConfig::default()).unwrap();
        assert_eq!(read_all(&port, &mut cache), [a]);
        assert_eq!(port.stats().rx_dropped, 1);
        drop(port);
        drop(cache);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn unsupported_files_are_refused_by_name() {
        let cases: [(Vec<u8>, &str); 4] = [
            (
                capture(false, MAGIC_MICROS, 65535, 113, &[]),
                "link type 113",
            ),
            (capture(false, 0x0a0d_0d0a, 65535, 1, &[]), "pcapng"),
            (
                capture(false, 0x1234_5678, 65535, 1, &[]),
                "not a pcap file",
            ),
            (
                capture(false, MAGIC_MICROS, 65535, 1 | LINKTYPE_FCS_PRESENT, &[]),
                "frame check",
            ),
        ];
        for (i, (bytes, expected)) in cases.into_iter().enumerate() {
            let file = TempFile::with(&format!("unsupported{i}"), &bytes);
            let err = PcapPort::open_read(&file.0, PcapReadConfig::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(text.contains(&file.0.display().to_string()), "{text}");
        }
        let missing = TempFile::new("missing");
        assert!(PcapPort::open_read(&missing.0, PcapReadConfig::default()).is_err());

        let file = TempFile::with("speed", &capture(false, MAGIC_MICROS, 65535, 1, &[]));
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let cfg = PcapReadConfig {
                timing: Timing::Recorded { speed },
                ..PcapReadConfig::default()
            };
            assert!(PcapPort::open_read(&file.0, cfg).is_err(), "speed {speed}");
        }
    }

    #[test]
    fn round_trip_port_to_file_to_port() {
        let pool = PacketPool::new("t", 128);
        let mut cache = pool.cache(64);
        let file = TempFile::new("roundtrip");
        let frames: Vec<Vec<u8>> = (0..40u8).map(|i| frame(i, 60 + i as usize)).collect();

        let out = PcapPort::create_write(&file.0, PcapWriteConfig::default()).unwrap();
        assert_eq!((out.info().rx_queues, out.info().tx_queues), (0, 1));
        assert!(matches!(
            out.rx_queue(0),
            Err(PortError::NoSuchQueue { .. })
        ));
        let mut tx = out.tx_queue(0).unwrap();
        assert!(matches!(out.tx_queue(0), Err(PortError::QueueTaken { .. })));
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        for chunk in frames.chunks(32) {
            let mut batch: Batch = chunk
                .iter()
                .map(|f| {
                    let mut p = cache.alloc().unwrap();
                    p.fill(f);
                    p
                })
                .collect();
            assert_eq!(tx.tx_burst(&mut batch, &mut cache), chunk.len());
            assert!(batch.is_empty());
        }
        tx.flush();
        // Flushed: the file is complete while the queue is still open.
        let on_disk: Vec<_> = PcapReader::open(&file.0)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(on_disk.len(), 40);
        assert!(on_disk.iter().all(|(ts, _)| *ts >= before));
        drop(tx);
        let stats = out.stats();
        assert_eq!((stats.tx_packets, stats.tx_dropped), (40, 0));
        assert_eq!(out.error(), None);

        let cfg = PcapReadConfig {
            port_id: 3,
            ..PcapReadConfig::default()
        };
        let input = PcapPort::open_read(&file.0, cfg).unwrap();
        assert_eq!((input.info().rx_queues, input.info().tx_queues), (1, 0));
        let mut rx = input.rx_queue(0).unwrap();
        assert!(matches!(
            input.rx_queue(0),
            Err(PortError::QueueTaken { .. })
        ));
        assert!(matches!(
            input.rx_queue(1),
            Err(PortError::NoSuchQueue { .. })
        ));
        let mut batch = Batch::new();
        let mut got = Vec::new();
        while rx.rx_burst(&mut cache, &mut batch) > 0 {
            for p in batch.drain(..) {
                assert_eq!((p.rx_port, p.rx_queue), (3, 0));
                got.push(p.data().to_vec());
                cache.free(p);
            }
        }
        assert_eq!(got, frames);
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!(input.stats().rx_bytes, bytes);
        assert_eq!(input.stats().rx_packets, 40);
        drop(rx);
        drop((input, out));
        drop(cache);
        assert_eq!(pool.available(), 128);
    }

    #[test]
    fn dropping_the_writer_queue_flushes() {
        let file = TempFile::new("dropflush");
        let pool = PacketPool::new("t", 8);
        let mut cache = pool.cache(64);
        let port = PcapPort::create_write(&file.0, PcapWriteConfig::default()).unwrap();
        let mut tx = port.tx_queue(0).unwrap();
        let mut batch = Batch::new();
        let mut p = cache.alloc().unwrap();
        p.fill(&frame(7, 80));
        batch.push(p);
        tx.tx_burst(&mut batch, &mut cache);
        drop(tx);
        let on_disk: Vec<_> = PcapReader::open(&file.0)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(on_disk.len(), 1);
        assert_eq!(on_disk[0].1, frame(7, 80));
        // The queue can be taken again and keeps appending.
        assert!(port.tx_queue(0).is_ok());
    }

    #[test]
    fn repeat_loops_and_gives_up_on_files_without_frames() {
        let a = frame(1, 60);
        let b = frame(2, 61);
        let c = frame(3, 62);
        let bytes = capture(
            false,
            MAGIC_MICROS,
            65535,
            1,
            &[(1, 0, 60, 60, &a), (1, 1, 61, 61, &b), (1, 2, 62, 62, &c)],
        );
        let file = TempFile::with("repeat", &bytes);
        let pool = PacketPool::new("t", 128);
        let mut cache = pool.cache(64);
        let cfg = PcapReadConfig {
            repeat: true,
            ..PcapReadConfig::default()
        };
        let port = PcapPort::open_read(&file.0, cfg.clone()).unwrap();
        let mut rx = port.rx_queue(0).unwrap();
        let mut batch = Batch::new();
        let mut got = Vec::new();
        while got.len() < 100 {
            assert!(rx.rx_burst(&mut cache, &mut batch) > 0);
            for p in batch.drain(..) {
                got.push(p.data()[0]);
                cache.free(p);
            }
        }
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, &tag)| tag == (i % 3) as u8 + 1));

        // Only a damaged record: repeat must not spin forever.
        let bad = capture(false, MAGIC_MICROS, 65535, 1, &[(1, 0, 60, 60, &a[..10])]);
        let file = TempFile::with("repeat-bad", &bad);
        let port = PcapPort::open_read(&file.0, cfg).unwrap();
        assert!(read_all(&port, &mut cache).is_empty());
        assert_eq!(port.stats().rx_dropped, 1);
    }

    #[test]
    fn recorded_timing_releases_packets_no_earlier_than_their_offsets() {
        let file = TempFile::new("timing");
        let base = 1_600_000_000 * NANOS_PER_SEC;
        let gap = 20_000_000; // 20 ms
        let mut w = PcapWriter::create(&file.0, DEFAULT_SNAPLEN).unwrap();
        for i in 0..3u8 {
            w.write_record(base + i as u64 * gap, &frame(i, 60))
                .unwrap();
        }
        w.flush().unwrap();
        drop(w);

        let pool = PacketPool::new("t", 16);
        let mut cache = pool.cache(64);
        let cfg = PcapReadConfig {
            timing: Timing::Recorded { speed: 1.0 },
            ..PcapReadConfig::default()
        };
        let port = PcapPort::open_read(&file.0, cfg).unwrap();
        let mut rx = port.rx_queue(0).unwrap();
        let mut batch = Batch::new();
        let t0 = Instant::now();
        let mut arrivals = Vec::new();
        while arrivals.len() < 3 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "capture never finished"
            );
            rx.rx_burst(&mut cache, &mut batch);
            let at = t0.elapsed();
            for p in batch.drain(..) {
                arrivals.push((p.data()[0], at));
                cache.free(p);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        for (i, &(tag, at)) in arrivals.iter().enumerate() {
            assert_eq!(tag, i as u8, "order");
            let offset = Duration::from_nanos(i as u64 * gap);
            assert!(at >= offset, "packet {i} at {at:?}, due at {offset:?}");
        }
        assert_eq!(rx.rx_burst(&mut cache, &mut batch), 0);
    }
}
