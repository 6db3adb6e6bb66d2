// Functions written by a `macro_rules!` macro: the user's tokens carry that macro's hygiene,
// and the generated code must still see its own locals.
use ephaptic::Caller;

macro_rules! echo {
    ($name:ident, $t:ty) => {
        #[ephaptic::expose]
        async fn $name(value: $t, _caller: Caller) -> $t {
            value
        }
    };
}

echo!(echo_u32, u32);
echo!(echo_string, String);

macro_rules! loader {
    ($t:ty) => {
        #[ephaptic::identity_loader]
        fn load(auth: $t) -> Option<$t> {
            Some(auth)
        }
    };
}

loader!(String);

fn main() {}
