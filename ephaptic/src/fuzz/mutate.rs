//! Mutating frames without coverage feedback: a small fixed-seed PRNG and edits aimed at a
//! MessagePack reader (byte flips, truncations, splices, length fields blown up, markers
//! swapped, containers nested). Shared by the long runner and the property tests.

/// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes a MessagePack reader treats specially: container and string headers, the reserved
/// byte, extension markers, integer edges.
const INTERESTING: &[u8] = &[
    0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc,
    0xdd, 0xde, 0xdf, 0xe0, 0xff,
];

/// Headers whose length field follows them, with the width of that field.
fn length_width(marker: u8) -> Option<usize> {
    match marker {
        0xc4 | 0xc7 | 0xd9 => Some(1),
        0xc5 | 0xc8 | 0xda | 0xdc | 0xde => Some(2),
        0xc6 | 0xc9 | 0xdb | 0xdd | 0xdf => Some(4),
        _ => None,
    }
}

/// Pieces worth splicing in: keys and values of the frame shapes, and headers that lie.
const TOKENS: &[&[u8]] = &[
    b"\xa4type",
    b"\xa3rpc",
    b"\xa4init",
    b"\xa6cancel",
    b"\xa2id",
    b"\xa4name",
    b"\xa4args",
    b"\xa6kwargs",
    b"\xa4auth",
    b"\xa9fuzz_ints",
    b"\xa9fuzz_text",
    b"\xa9fuzz_item",
    b"\xa8fuzz_any",
    b"\xa9fuzz_none",
    b"\xa1a",
    b"\xa1b",
    b"\xa1c",
    b"\xa1s",
    b"\xa4tags",
    b"\xa4item",
    b"\xa5title",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff",
    b"\xc9\x7f\xff\xff\xff\x01",
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
    b"\xa2\xff\xfe",
    b"\xd4\x01\x00",
];

/// One to four edits of `input`, with `corpus` as material to splice from.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        edit(rng, &mut out, corpus);
    }
    out
}

fn edit(rng: &mut Rng, out: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = out.len();
    let at = |rng: &mut Rng| rng.below(len + 1);
    match rng.below(11) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        // Set a byte to one a reader cares about.
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        // Truncate.
        2 if len > 0 => out.truncate(rng.below(len)),
        // Cut a range out.
        3 if len > 1 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(8)).min(len);
            out.drain(a..b);
        }
        // Insert a token.
        4 => {
            let i = at(rng);
            let token = TOKENS[rng.below(TOKENS.len())];
            out.splice(i..i, token.iter().copied());
        }
        // Splice in a piece of another input.
        5 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            if !other.is_empty() {
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(32)).min(other.len());
                let i = at(rng);
                out.splice(i..i, other[a..b].iter().copied());
            }
        }
        // Blow up (or shrink) a length field: of a fix-size header, or of a sized one.
        6 if len > 0 => {
            let start = rng.below(len);
            if let Some(i) = (start..len)
                .find(|&i| length_width(out[i]).is_some() || (0x80..=0xbf).contains(&out[i]))
            {
                match length_width(out[i]) {
                    Some(w) if i + w < len => {
                        let fill = if rng.one_in(2) {
                            0xff
                        } else {
                            rng.below(256) as u8
                        };
                        for b in &mut out[i + 1..=i + w] {
                            *b = fill;
                        }
                    }
                    Some(_) => {}
                    None => out[i] = (out[i] & 0xe0) | (out[i] & 0x10) | rng.below(16) as u8,
                }
            }
        }
        // Duplicate a range (repeated keys, repeated arguments).
        7 if len > 1 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            let piece = out[a..b].to_vec();
            let i = at(rng);
            out.splice(i..i, piece);
        }
        // Wrap what follows a position in an array (nesting), many times over now and then.
        8 => {
            let i = at(rng);
            let depth = if rng.one_in(8) {
                100 + rng.below(3000)
            } else {
                1 + rng.below(4)
            };
            out.splice(i..i, std::iter::repeat_n(0x91, depth));
        }
        // Insert random bytes.
        9 => {
            let i = at(rng);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
            out.splice(i..i, bytes);
        }
        // Append trailing bytes, or a long string.
        _ => {
            if rng.one_in(2) {
                out.push(rng.below(256) as u8);
            } else {
                let n = rng.below(2000);
                out.push(0xda);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend(std::iter::repeat_n(b'x', n));
            }
        }
    }
}
