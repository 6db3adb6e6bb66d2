use futures_util::stream::{self, Stream};

#[ephaptic::error(code = "TOO_BIG", message = "The number is too big.")]
pub struct TooBig {
    pub limit: u32,
}

#[ephaptic::expose]
async fn unit() {}

#[ephaptic::expose]
async fn explicit_unit() -> () {}

#[ephaptic::expose]
async fn value() -> Vec<String> {
    vec![]
}

#[ephaptic::expose]
async fn fallible(n: u32) -> Result<u32, ephaptic::Error> {
    if n > 10 {
        Err(ephaptic::Error::new("TOO_BIG", "no"))
    } else {
        Ok(n)
    }
}

#[ephaptic::expose]
async fn fallible_alias(n: u32) -> ephaptic::Result<u32> {
    Ok(n)
}

#[ephaptic::expose]
async fn declared_error(n: u32) -> Result<u32, TooBig> {
    if n > 10 {
        Err(TooBig { limit: 10 })
    } else {
        Ok(n)
    }
}

#[ephaptic::expose]
async fn std_error(text: String) -> Result<u32, ephaptic::Error> {
    Ok(text.parse::<u32>()?)
}

#[ephaptic::expose]
async fn countdown(n: u32) -> impl Stream<Item = u32> {
    stream::iter((1..=n).rev())
}

#[ephaptic::expose]
async fn try_countdown(n: u32) -> impl Stream<Item = Result<u32, TooBig>> {
    stream::iter((1..=n).map(|i| {
        if i > 10 {
            Err(TooBig { limit: 10 })
        } else {
            Ok(i)
        }
    }))
}

#[ephaptic::expose]
async fn maybe_stream(n: u32) -> Result<impl Stream<Item = u32>, TooBig> {
    if n > 10 {
        Err(TooBig { limit: 10 })
    } else {
        Ok(stream::iter(0..n))
    }
}

#[ephaptic::expose]
async fn maybe_try_stream(
    n: u32,
) -> Result<impl Stream<Item = Result<u32, ephaptic::Error>>, ephaptic::Error> {
    Ok(stream::iter((0..n).map(Ok)))
}

#[ephaptic::expose]
fn sync_stream(n: u32) -> impl Stream<Item = String> + Send + 'static {
    stream::iter((0..n).map(|i| i.to_string()))
}

#[ephaptic::expose]
fn sync_result(n: u32) -> Result<u32, TooBig> {
    Ok(n)
}

fn main() {}
