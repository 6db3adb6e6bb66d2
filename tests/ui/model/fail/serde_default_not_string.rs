#[ephaptic::model]
#[serde(default = 1)]
pub struct Settings {
    #[serde(default = 30)]
    pub timeout: u32,
    #[serde(default = "not a path")]
    pub theme: String,
}

#[ephaptic::expose]
async fn save(settings: Settings) -> Settings {
    settings
}

fn main() {}
