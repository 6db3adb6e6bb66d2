#[ephaptic::error(code = "TOO_LONG", message = "At most {max} characters; yours has {lenght}.")]
pub struct TooLong {
    pub max: usize,
    pub length: usize,
}

fn main() {}
