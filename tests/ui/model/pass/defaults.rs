// `#[ephaptic(default = ..)]` on a model, a generic one included; `#[model(default)]`.
#[ephaptic::model]
pub struct Settings {
    #[ephaptic(default = 30)]
    pub timeout: u32,
    #[ephaptic(default = "dark")]
    pub theme: String,
}

#[ephaptic::model(default)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[ephaptic(default = 20)]
    pub limit: u32,
}

// Without `default` and with a field that has none, no `Default` is written: the user's own
// derive is fine when no field has a default of ours.
#[ephaptic::model]
#[derive(Default)]
pub struct Plain {
    pub name: String,
}

fn main() {
    let s = Settings::default();
    assert_eq!((s.timeout, s.theme.as_str()), (30, "dark"));
    let p: Page<String> = Page::default();
    assert_eq!((p.items.len(), p.limit), (0, 20));
    let _ = Plain::default();
}
