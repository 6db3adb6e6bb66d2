struct Counter;

impl Counter {
    #[ephaptic::expose]
    async fn get(&self) -> u64 {
        0
    }
}

fn main() {}
