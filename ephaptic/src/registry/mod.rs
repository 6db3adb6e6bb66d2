//! What the application declared: exposed functions, error types, the identity loader.
//!
//! The macros write one `const`-built record per item and hand it to `inventory`, so items are
//! found at start-up wherever they are defined, with no list to maintain. The records are read
//! once into a [`Registry`] (a map by wire name) when a server is built.

use std::collections::HashMap;
use std::fmt;

use crate::handler::{ErrorDef, EventDef, FunctionDef, LoaderDef, NamingDef, Registration};

mod index;
mod naming;

pub(crate) use index::FunctionIndex;
pub use naming::Naming;

/// Every exposed function a server serves, by wire name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub functions: HashMap<&'static str, &'static FunctionDef>,
    pub errors: HashMap<&'static str, &'static ErrorDef>,
    pub events: HashMap<&'static str, &'static EventDef>,
    /// Channel name -> the functions that announce on it.
    pub channels: HashMap<&'static str, Vec<&'static FunctionDef>>,
    pub loader: Option<&'static LoaderDef>,
    /// The naming rule in effect: the server's own, else the one declared with `naming!`.
    pub naming: Naming,
}

/// Why a server cannot start: declared items that cannot be served together (every conflict
/// is listed), or a setting that cannot be used (a Redis URL that cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError(pub(crate) Vec<String>);

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for RegistryError {}

impl Registry {
    /// Reads every link-time registration plus the explicit ones. Duplicates are collected,
    /// not stopped at, so one start-up names every conflict.
    ///
    /// `naming` is the server's own rule ([`Server::rename_all`](crate::Server::rename_all));
    /// without one, the rule declared with [`naming!`](crate::naming) applies, else
    /// [`Naming::AsWritten`].
    pub fn build(
        explicit: &[&'static FunctionDef],
        naming: Option<Naming>,
    ) -> Result<Self, RegistryError> {
        let mut reg = Registry::default();
        let mut problems = Vec::new();
        let submitted: Vec<Registration> = inventory::iter::<Registration>
            .into_iter()
            .copied()
            .collect();
        // The naming rule first: it decides the wire names the loop below checks.
        let mut declared: Vec<&'static NamingDef> = Vec::new();
        for item in &submitted {
            if let Registration::Naming(n) = *item
                && !declared.iter().any(|d| d.naming == n.naming)
            {
                declared.push(n);
            }
        }
        if declared.len() > 1 {
            let rules: Vec<String> = declared
                .iter()
                .map(|d| format!("{:?} at {}", d.naming, d.site))
                .collect();
            problems.push(format!(
                "different naming rules are declared: {}; keep one `ephaptic::naming!(..)`",
                rules.join(", ")
            ));
        }
        let naming = naming
            .or(declared.first().map(|d| d.naming))
            .unwrap_or_default();
        reg.naming = naming;
        for item in submitted
            .into_iter()
            .chain(explicit.iter().map(|f| Registration::Function(f)))
        {
            match item {
                Registration::Naming(_) => {}
                Registration::Function(f) => match reg.functions.get(naming.apply(f).as_ref()) {
                    // The same definition met twice (linked, and registered explicitly).
                    Some(prev) if prev.site == f.site => {}
                    Some(prev) => problems.push(format!(
                        "two exposed functions are named '{}': {} and {}; rename one with #[expose(name = \"...\")]",
                        f.name, prev.site, f.site
                    )),
                    None => {
                        let f = naming.rename(f);
                        reg.functions.insert(f.name, f);
                    }
                },
                Registration::Event(e) => match reg.events.get(e.name) {
                    Some(prev) if std::ptr::eq(*prev, e) => {}
                    Some(prev) => problems.push(format!(
                        "two events are named '{}': {} and {}; rename one with #[event(name = \"...\")]",
                        e.name, prev.site, e.site
                    )),
                    None => {
                        reg.events.insert(e.name, e);
                    }
                },
                Registration::Error(e) => match reg.errors.get(e.code) {
                    Some(prev) if std::ptr::eq(*prev, e) => {}
                    Some(prev) => problems.push(format!(
                        "two error types declare the code '{}': {} and {}; give one a different code",
                        e.code, prev.site, e.site
                    )),
                    None => {
                        reg.errors.insert(e.code, e);
                    }
                },
                Registration::Loader(l) => match reg.loader {
                    Some(prev) if std::ptr::eq(prev, l) => {}
                    Some(prev) => problems.push(format!(
                        "two identity loaders are declared: {} and {}; keep one",
                        prev.site, l.site
                    )),
                    None => reg.loader = Some(l),
                },
            }
        }
        for f in reg.functions.values() {
            for channel in f.channels {
                reg.channels.entry(channel).or_default().push(f);
            }
        }
        for (channel, fns) in &reg.channels {
            if let Some(event) = reg.events.get(channel) {
                problems.push(format!(
                    "'{channel}' is both an event ({}) and a channel announced by {}; clients could not tell their payloads apart, so rename one",
                    event.site, fns[0].site
                ));
            }
        }
        if problems.is_empty() {
            Ok(reg)
        } else {
            Err(RegistryError(problems))
        }
    }
}

/// Everything a build declares, for tools such as the TypeScript exporter: read from the same
/// registrations a server serves, sorted by name.
#[derive(Debug)]
pub struct Introspection {
    /// The naming rule the wire names below follow.
    pub naming: Naming,
    /// Exposed functions, by wire name.
    pub functions: Vec<&'static FunctionDef>,
    /// Events, by name.
    pub events: Vec<&'static EventDef>,
    /// Declared error types, by code.
    pub errors: Vec<&'static ErrorDef>,
    /// Channels, by name, with the functions that announce on each.
    pub channels: Vec<(&'static str, Vec<&'static FunctionDef>)>,
}

impl Registry {
    pub(crate) fn introspect(&self) -> Introspection {
        let mut functions: Vec<_> = self.functions.values().copied().collect();
        functions.sort_by_key(|f| f.name);
        let mut events: Vec<_> = self.events.values().copied().collect();
        events.sort_by_key(|e| e.name);
        let mut errors: Vec<_> = self.errors.values().copied().collect();
        errors.sort_by_key(|e| e.code);
        let mut channels: Vec<_> = self
            .channels
            .iter()
            .map(|(name, fns)| {
                let mut fns = fns.clone();
                fns.sort_by_key(|f| f.name);
                (*name, fns)
            })
            .collect();
        channels.sort_by_key(|(name, _)| *name);
        Introspection {
            naming: self.naming,
            functions,
            events,
            errors,
            channels,
        }
    }
}
