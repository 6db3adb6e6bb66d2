//! How functions are named on the wire: as written, or in camelCase for a whole server.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::handler::FunctionDef;
pub use crate::handler::defs::Naming;

impl Naming {
    /// The wire name of `f` under this rule.
    pub fn apply(self, f: &FunctionDef) -> Cow<'static, str> {
        match self {
            Naming::CamelCase if !f.explicit_name => camel_case(f.name).into(),
            _ => f.name.into(),
        }
    }

    /// `f` under its wire name. A renamed record is made once per function for the life of
    /// the process (it must be `'static`, as the originals are), however many servers are
    /// built: building servers in a loop, as tests do, does not grow memory.
    pub(crate) fn rename(self, f: &'static FunctionDef) -> &'static FunctionDef {
        let Cow::Owned(name) = self.apply(f) else {
            return f;
        };
        static RENAMED: Mutex<Option<HashMap<(usize, String), &'static FunctionDef>>> =
            Mutex::new(None);
        let mut renamed = RENAMED.lock().unwrap_or_else(|e| e.into_inner());
        let key = (f as *const FunctionDef as usize, name);
        let made: &mut &'static FunctionDef = renamed
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_insert_with_key(|(_, name)| {
                Box::leak(Box::new(FunctionDef {
                    name: Box::leak(name.clone().into_boxed_str()),
                    ..*f
                }))
            });
        made
    }
}

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for (i, c) in name.trim_start_matches('_').chars().enumerate() {
        if c == '_' {
            upper = i > 0;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_record_is_made_once_per_function() {
        static DEF: FunctionDef = FunctionDef::new(
            "create_todo",
            crate::handler::defs::Site {
                rust_name: "create_todo",
                module: "m",
                file: "f.rs",
                line: 1,
            },
            |_| unreachable!(),
        );
        let first = Naming::CamelCase.rename(&DEF);
        assert_eq!(first.name, "createTodo");
        assert!(std::ptr::eq(first, Naming::CamelCase.rename(&DEF)));
        assert!(std::ptr::eq(Naming::AsWritten.rename(&DEF), &DEF));
    }

    #[test]
    fn camel_case_joins_snake_words() {
        assert_eq!(super::camel_case("create_todo"), "createTodo");
        assert_eq!(super::camel_case("add"), "add");
        assert_eq!(super::camel_case("get_user_by_id"), "getUserById");
    }
}
