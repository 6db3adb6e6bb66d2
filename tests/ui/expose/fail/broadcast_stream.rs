use futures_util::stream::{self, Stream};

#[ephaptic::expose(broadcast = ["counted"])]
async fn count(n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n)
}

#[ephaptic::expose(broadcast = ["counted"])]
async fn try_count(n: u32) -> Result<impl Stream<Item = u32>, ephaptic::Error> {
    Ok(stream::iter(0..n))
}

fn main() {}
