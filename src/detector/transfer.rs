//! Transfer decoding of the MIME parts the detector reads, done when a part is read rather
//! than by the parser for every part ([`super::mime`]). The results are those of
//! mail-parser's own streaming decoders (`decode_quoted_printable_mime`,
//! `decode_base64_mime`), quirks included, so that a message reads the same either way;
//! the tests compare them on generated input.
//!
//! Both decoders read a part's body from its first byte to the part's boundary
//! (`--boundary`, searched for anywhere, as the parser does), or to the end of the message
//! when the part is in no multipart (an empty boundary).

use mail_parser::decoders::base64::BASE64_MAP;
use mail_parser::decoders::quoted_printable::HEX_MAP;

/// Bytes that end a run of plain quoted-printable text.
const fn qp_specials() -> [bool; 256] {
    let mut t = [false; 256];
    t[b'=' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'-' as usize] = true;
    t
}
static QP_SPECIAL: [bool; 256] = qp_specials();

#[derive(Clone, Copy, PartialEq, Eq)]
enum Qp {
    Text,
    Equals,
    Hex(u8),
}

fn hex(ch: u8) -> Option<u8> {
    HEX_MAP.get(ch as usize).and_then(|&v| u8::try_from(v).ok())
}

/// Decodes a quoted-printable body that starts at `data[0]`. `None` when mail-parser's
/// decoder gives up on it (a bad escape, no boundary): the parser then keeps the raw
/// bytes.
///
/// Runs of plain text are copied whole, where the parser's decoder goes byte by byte:
/// that is the whole difference.
pub(crate) fn quoted_printable(data: &[u8], boundary: &[u8]) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(data.len());
    let mut state = Qp::Text;
    // Literal blanks at the end of the output so far (dropped at a line end).
    let mut blanks = 0usize;
    let mut crlf: &[u8] = b"\n";
    let mut i = 0usize;
    while let Some(&ch) = data.get(i) {
        if state == Qp::Text && !QP_SPECIAL[ch as usize] {
            let start = i;
            while data.get(i).is_some_and(|&b| !QP_SPECIAL[b as usize]) {
                i += 1;
            }
            let run = data.get(start..i).unwrap_or_default();
            buf.extend_from_slice(run);
            blanks = match run.iter().rposition(|b| !b.is_ascii_whitespace()) {
                Some(p) => run.len() - 1 - p,
                None => blanks + run.len(),
            };
            continue;
        }
        // `data[i]` is the current byte; the two before it decide a boundary.
        let last = i.checked_sub(1).and_then(|j| data.get(j)).copied();
        let before_last = i.checked_sub(2).and_then(|j| data.get(j)).copied();
        i += 1;
        match ch {
            b'=' => {
                if state != Qp::Text {
                    return None;
                }
                state = Qp::Equals;
            }
            b'\n' => {
                if state == Qp::Equals {
                    state = Qp::Text;
                } else {
                    buf.truncate(buf.len().saturating_sub(blanks));
                    buf.extend_from_slice(crlf);
                }
                blanks = 0;
            }
            b'\r' => crlf = b"\r\n",
            b'-' if !boundary.is_empty()
                && last == Some(b'-')
                && data.get(i..).is_some_and(|r| r.starts_with(boundary)) =>
            {
                // The dash before, and the line end before it, are not part of the body.
                // (The parser's count can exceed what is there after a soft line break;
                // it then leaves the output as it is.)
                let n = if before_last == Some(b'\n') {
                    crlf.len() + 1
                } else {
                    1
                };
                if let Some(len) = buf.len().checked_sub(n) {
                    buf.truncate(len);
                }
                return Some(buf);
            }
            _ => match state {
                Qp::Text => {
                    if ch.is_ascii_whitespace() {
                        blanks += 1;
                    } else {
                        blanks = 0;
                    }
                    buf.push(ch);
                }
                Qp::Equals => {
                    if let Some(h) = hex(ch) {
                        state = Qp::Hex(h);
                    } else if !ch.is_ascii_whitespace() {
                        return None;
                    }
                }
                Qp::Hex(h1) => {
                    let h2 = hex(ch)?;
                    buf.push((h1 << 4) | h2);
                    blanks = 0;
                    state = Qp::Text;
                }
            },
        }
    }
    boundary.is_empty().then_some(buf)
}

fn base64_char(ch: u8) -> bool {
    BASE64_MAP
        .first()
        .and_then(|row| row.get(ch as usize))
        .is_some_and(|&v| v < 0x01ff_ffff)
}

/// Whether mail-parser's decoder decodes the base64 body that starts at `data[0]`, without
/// decoding it: only alphabet letters, `=` and blanks up to the boundary, and no other
/// `--` before it.
pub(crate) fn base64_decodes(data: &[u8], boundary: &[u8]) -> bool {
    let mut last = b'\n';
    for (i, &ch) in data.iter().enumerate() {
        if base64_char(ch) {
        } else if ch == b'-' {
            if last == b'-' {
                return !boundary.is_empty()
                    && data.get(i + 1..).is_some_and(|r| r.starts_with(boundary));
            }
        } else if !matches!(ch, b'=' | b'\n' | b' ' | b'\t' | b'\r') {
            return false;
        }
        last = ch;
    }
    boundary.is_empty()
}

#[cfg(test)]
mod test {
    use super::*;
    use mail_parser::parsers::MessageStream;

    /// A small deterministic generator (xorshift), so that failures repeat.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// mail-parser's decoder, or `None` when it panics (its length arithmetic can
    /// underflow, which a debug build checks).
    fn reference<F>(f: F) -> Option<Option<Vec<u8>>>
    where
        F: FnOnce() -> (usize, Vec<u8>) + std::panic::UnwindSafe,
    {
        let (end, bytes) = std::panic::catch_unwind(f).ok()?;
        Some((end != usize::MAX).then_some(bytes))
    }

    const BOUNDARIES: &[&[u8]] = &[b"", b"b", b"=_x-1", b"--", b"bb"];

    #[test]
    fn quoted_printable_decodes_as_the_parser_does() {
        let pieces: &[&[u8]] = &[
            b"a",
            b"Z",
            b"=",
            b"=3D",
            b"=3d",
            b"=4",
            b"=g",
            b"=\n",
            b"= \n",
            b" ",
            b"\t",
            b"\n",
            b"\r\n",
            b"\r",
            b"-",
            b"--",
            b"--b",
            b"--bb",
            b"=_x-1",
            b"\xc3\xa9",
            b"\x0c",
            b"x y",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut compared = 0;
        for _ in 0..60_000 {
            let len = (rng.next() % 14) as usize;
            let data: Vec<u8> = (0..len).flat_map(|_| rng.pick(pieces).to_vec()).collect();
            let boundary = rng.pick(BOUNDARIES);
            let theirs = reference(|| {
                let (end, b) = MessageStream::new(&data).decode_quoted_printable_mime(boundary);
                (end, b.into_owned())
            });
            let Some(theirs) = theirs else { continue };
            compared += 1;
            assert_eq!(
                quoted_printable(&data, boundary),
                theirs,
                "{:?} to {:?}",
                String::from_utf8_lossy(&data),
                String::from_utf8_lossy(boundary)
            );
        }
        assert!(compared > 50_000);
    }

    #[test]
    fn base64_check_agrees_with_the_parser() {
        let pieces: &[&[u8]] = &[
            b"QUJD", b"QQ==", b"QUI=", b"=", b"\n", b"\r\n", b" ", b"\t", b"-", b"--", b"--b",
            b"--bb", b"=_x-1", b"!", b"_", b"a",
        ];
        // The check takes every row of the parser's table to agree on the alphabet.
        for ch in 0..=255u8 {
            let valid: Vec<bool> = BASE64_MAP
                .iter()
                .map(|row| row[ch as usize] < 0x01ff_ffff)
                .collect();
            assert!(valid.iter().all(|&v| v == valid[0]), "byte {ch}");
        }
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..40_000 {
            let len = (rng.next() % 12) as usize;
            let data: Vec<u8> = (0..len).flat_map(|_| rng.pick(pieces).to_vec()).collect();
            let boundary = rng.pick(BOUNDARIES);
            let theirs = reference(|| {
                let (end, b) = MessageStream::new(&data).decode_base64_mime(boundary);
                (end, b.into_owned())
            });
            let Some(theirs) = theirs else { continue };
            assert_eq!(
                base64_decodes(&data, boundary),
                theirs.is_some(),
                "{:?} to {:?}",
                String::from_utf8_lossy(&data),
                String::from_utf8_lossy(boundary)
            );
        }
    }
}
