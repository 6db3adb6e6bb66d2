#[ephaptic::model(rename_all = "camelCase")]
pub struct Settings {
    pub timeout: u32,
}

#[ephaptic::model(default)]
pub enum Level {
    Low,
}

fn main() {}
