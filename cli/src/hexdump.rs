//! The canonical hex + ASCII layout of `hexdump -C`, streamed.
//!
//! ```text
//! 00000000  68 65 6c 6c 6f 0a 00 00  00 00 00 00 00 00 00 00  |hello...........|
//! 00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
//! *
//! 00000040  00 00 61 62 63                                    |..abc|
//! 00000045
//! ```
//!
//! Offsets are absolute (where the dump starts, as with `hexdump -C -s`),
//! at least 8 hex digits; 16 bytes a line in two groups of 8; printable
//! ASCII (0x20..=0x7e) as itself, anything else as `.`; a full line equal
//! to the one before becomes one `*`; the last line is the end offset.
//! Nothing at all is printed for zero bytes.

use std::io::{self, Write};

const LINE: usize = 16;

/// Feeds bytes in any chunks; call [`finish`](Self::finish) at the end.
pub struct Hexdump<W: Write> {
    out: W,
    /// The offset of the first byte in `pending`.
    offset: u64,
    pending: Vec<u8>,
    previous: Option<[u8; LINE]>,
    squeezing: bool,
    any: bool,
}

impl<W: Write> Hexdump<W> {
    /// A dump whose first byte is at `offset`.
    pub fn new(out: W, offset: u64) -> Self {
        Hexdump {
            out,
            offset,
            pending: Vec::with_capacity(LINE),
            previous: None,
            squeezing: false,
            any: false,
        }
    }

    /// Dumps `bytes`, the next ones after what came before.
    pub fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if !bytes.is_empty() {
            self.any = true;
        }
        if !self.pending.is_empty() {
            let take = (LINE - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == LINE {
                let line: [u8; LINE] = self.pending[..].try_into().expect("a full line");
                self.pending.clear();
                self.full_line(line)?;
            }
        }
        let mut lines = bytes.chunks_exact(LINE);
        for line in &mut lines {
            self.full_line(line.try_into().expect("a full line"))?;
        }
        self.pending.extend_from_slice(lines.remainder());
        Ok(())
    }

    /// Prints the last partial line and the end offset; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            write_line(&mut self.out, self.offset, &pending)?;
            self.offset += pending.len() as u64;
        }
        if self.any {
            writeln!(self.out, "{:08x}", self.offset)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn full_line(&mut self, line: [u8; LINE]) -> io::Result<()> {
        if self.previous == Some(line) {
            if !self.squeezing {
                writeln!(self.out, "*")?;
                self.squeezing = true;
            }
        } else {
            write_line(&mut self.out, self.offset, &line)?;
            self.previous = Some(line);
            self.squeezing = false;
        }
        self.offset += LINE as u64;
        Ok(())
    }
}

fn write_line(out: &mut impl Write, offset: u64, bytes: &[u8]) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = Vec::with_capacity(96);
    write!(line, "{offset:08x}  ")?;
    for index in 0..LINE {
        match bytes.get(index) {
            Some(&byte) => line.extend_from_slice(&[
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
                b' ',
            ]),
            None => line.extend_from_slice(b"   "),
        }
        if index == 7 {
            line.push(b' ');
        }
    }
    line.extend_from_slice(b" |");
    line.extend(bytes.iter().map(|&byte| {
        if (0x20..=0x7e).contains(&byte) {
            byte
        } else {
            b'.'
        }
    }));
    line.extend_from_slice(b"|\n");
    out.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(bytes: &[u8], offset: u64, chunk: usize) -> String {
        let mut hexdump = Hexdump::new(Vec::new(), offset);
        for piece in bytes.chunks(chunk.max(1)) {
            hexdump.feed(piece).unwrap();
        }
        String::from_utf8(hexdump.finish().unwrap()).unwrap()
    }

    #[test]
    fn the_layout_of_hexdump_c() {
        let mut bytes = b"hello\n".to_vec();
        bytes.extend([0u8; 60]);
        bytes.extend(b"abc");
        let expected = "\
00000000  68 65 6c 6c 6f 0a 00 00  00 00 00 00 00 00 00 00  |hello...........|
00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
*
00000040  00 00 61 62 63                                    |..abc|
00000045
";
        for chunk in [1, 3, 16, 17, 1000] {
            assert_eq!(dump(&bytes, 0, chunk), expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn short_repeated_and_offset() {
        assert_eq!(
            dump(b"hello", 0, 16),
            "00000000  68 65 6c 6c 6f                                    |hello|\n00000005\n"
        );
        assert_eq!(
            dump(b"12345678", 0, 16),
            "00000000  31 32 33 34 35 36 37 38                           |12345678|\n00000008\n"
        );
        assert_eq!(
            dump(&[0u8; 48], 0, 7),
            "00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n*\n00000030\n"
        );
        let mut bytes = b"3456789abcdefXYZ".to_vec();
        bytes.extend([0x7f, 0x80, 0xff, b' ', b'~']);
        assert_eq!(
            dump(&bytes, 3, 5),
            "\
00000003  33 34 35 36 37 38 39 61  62 63 64 65 66 58 59 5a  |3456789abcdefXYZ|
00000013  7f 80 ff 20 7e                                    |... ~|
00000018
"
        );
        assert_eq!(dump(b"", 0, 16), "");
        assert_eq!(
            dump(&[0u8; 16], 0x1_0000_0000, 16),
            "100000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n100000010\n"
        );
    }
}
