// A plain fn runs on the blocking pool.
#[ephaptic::expose]
fn checksum(data: Vec<u8>) -> u32 {
    data.iter().map(|b| u32::from(*b)).sum()
}

fn main() {}
