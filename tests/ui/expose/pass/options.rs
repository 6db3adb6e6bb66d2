use ephaptic::Caller;

#[ephaptic::expose(name = "whoAmI")]
async fn who_am_i(caller: Caller) -> Option<String> {
    caller.identity().map(|id| id.to_string())
}

#[ephaptic::expose(requires_login)]
async fn secret() -> String {
    "42".to_string()
}

#[ephaptic::expose(name = "getBalance", requires_login = true)]
async fn get_balance(account: u64) -> u64 {
    account
}

#[ephaptic::expose(requires_login = false)]
async fn public_info() {}

fn main() {}
