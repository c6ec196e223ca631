//! Streaming SHA-256 in bounded memory.
//!
//! [`HashingReader`] and [`HashingWriter`] wrap any reader or writer so the whole-stream hash
//! is computed in the same pass that reads, writes or uploads the bytes. `sha2` picks the CPU's
//! SHA extensions (SHA-NI on x86-64) at run time. Hashing is synchronous: async callers hash big
//! files through [`hash_file_blocking`] (on tokio's blocking pool).

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The read buffer used when hashing or copying files: large enough to amortise syscalls,
/// small enough to stay in the CPU's L2 cache.
pub const BUFFER_SIZE: usize = 256 * 1024;

/// A SHA-256 digest. Displays and serialises as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Lowercase hex, as `sha256sum` prints it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Standard base64, as S3 reports `ChecksumSHA256` for a single-part object.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Sha256Digest> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256Digest(out))
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sha256Digest::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a sha-256 hex digest: {s:?}")))
    }
}

/// An incremental SHA-256 that also counts bytes.
#[derive(Clone, Default)]
pub struct StreamHasher {
    hasher: Sha256,
    len: u64,
}

impl StreamHasher {
    /// A fresh hasher.
    pub fn new() -> StreamHasher {
        StreamHasher::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and the byte count.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.len)
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: StreamHasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: StreamHasher::new(),
        }
    }

    /// The digest and byte count of what was read, and the inner reader.
    pub fn finish(self) -> (Sha256Digest, u64, R) {
        let (d, n) = self.hasher.finish();
        (d, n, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes everything successfully written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: StreamHasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: StreamHasher::new(),
        }
    }

    /// The digest and byte count of what was written, and the inner writer.
    pub fn finish(self) -> (Sha256Digest, u64, W) {
        let (d, n) = self.hasher.finish();
        (d, n, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes a reader to its end with a fixed [`BUFFER_SIZE`] buffer.
pub fn hash_reader<R: Read>(mut reader: R) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = StreamHasher::new();
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Hashes a file (synchronously). Returns the digest and the size.
pub fn hash_file(path: &Path) -> io::Result<(Sha256Digest, u64)> {
    let file = std::fs::File::open(path)?;
    hash_reader(file)
}

/// Hashes a file on tokio's blocking pool, so big files do not stall the async runtime.
pub async fn hash_file_blocking(path: PathBuf) -> crate::Result<(Sha256Digest, u64)> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || hash_file(&p))
        .await
        .map_err(crate::Error::task)?
        .map_err(|e| crate::Error::io(path, e))
}

/// Copies `reader` into `writer`, hashing in the same pass. Returns the digest and the size.
pub fn copy_hashed<R: Read, W: Write>(
    mut reader: R,
    writer: &mut W,
) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = StreamHasher::new();
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-2 test vectors.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_vectors() {
        assert_eq!(Sha256Digest::of(b"abc").to_hex(), ABC);
        assert_eq!(Sha256Digest::of(b"").to_hex(), EMPTY);
        let (d, n) = hash_reader(&b""[..]).unwrap();
        assert_eq!((d.to_hex().as_str(), n), (EMPTY, 0));
    }

    #[test]
    fn streaming_equals_one_shot_across_buffer_boundaries() {
        let data: Vec<u8> = (0..(BUFFER_SIZE * 3 + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let (d, n) = hash_reader(&data[..]).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Sha256Digest::of(&data));

        let mut r = HashingReader::new(&data[..]);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        let (d2, n2, _) = r.finish();
        assert_eq!((d2, n2), (d, n));

        let mut w = HashingWriter::new(Vec::new());
        for chunk in data.chunks(7777) {
            w.write_all(chunk).unwrap();
        }
        let (d3, n3, out) = w.finish();
        assert_eq!((d3, n3), (d, n));
        assert_eq!(out, data);

        let mut out2 = Vec::new();
        assert_eq!(copy_hashed(&data[..], &mut out2).unwrap(), (d, n));
        assert_eq!(out2, data);
    }

    #[test]
    fn hex_and_base64_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(Sha256Digest::from_hex(ABC), Some(d));
        assert_eq!(Sha256Digest::from_hex(&ABC.to_uppercase()), Some(d));
        assert_eq!(Sha256Digest::from_hex("abc"), None);
        assert_eq!(
            d.to_base64(),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{ABC}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
    }
}
