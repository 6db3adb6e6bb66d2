#[ephaptic::error(code = "SOLD_OUT", message = "That item is sold out.")]
#[derive(Debug, Clone, Copy)]
pub struct SoldOut;

#[ephaptic::expose]
async fn buy(item: u32) -> Result<u32, SoldOut> {
    if item == 0 { Err(SoldOut) } else { Ok(item) }
}

fn main() {
    let e: ephaptic::Error = SoldOut.into();
    assert_eq!(e.message(), "That item is sold out.");
}
