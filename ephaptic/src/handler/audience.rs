//! Who an event goes to: everyone, the connections of some identities, a group. Data only;
//! sending is the runtime's (`Audience::emit`, in `runtime/emit.rs`).

use crate::identity::Identity;
use crate::session::Stream;

/// Who an event goes to. Built by [`to`], [`group`] and the constructors below; also what a
/// `broadcast_to` function returns for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// Every connected client.
    Everyone,
    /// Every connection of each of these identities (all their tabs and devices).
    Users(Vec<Identity>),
    /// Every connection that joined this group (see [`Caller::join`](crate::Caller::join)).
    Group(String),
    /// Nobody: the event is not sent.
    Nobody,
}

impl Audience {
    /// Every connected client.
    pub fn everyone() -> Self {
        Audience::Everyone
    }

    /// The connections of these identities.
    pub fn users(ids: impl IntoTargets) -> Self {
        Audience::Users(ids.into_targets())
    }

    /// The connections in a group.
    pub fn group(name: impl Into<String>) -> Self {
        Audience::Group(name.into())
    }

    /// Nobody.
    pub fn nobody() -> Self {
        Audience::Nobody
    }

    /// The streams this audience is: everyone's, each listed identity's once (`to([a, b, a])`
    /// is a and b), the group's, or none. Delivery, the history and the backplane go through
    /// these rather than matching the audience again.
    pub(crate) fn streams(&self) -> impl Iterator<Item = Stream<'_>> {
        let (one, ids): (Option<Stream<'_>>, &[Identity]) = match self {
            Audience::Everyone => (Some(Stream::All), &[]),
            Audience::Group(name) => (Some(Stream::Group(name)), &[]),
            Audience::Users(ids) => (None, ids),
            Audience::Nobody => (None, &[]),
        };
        one.into_iter().chain(distinct(ids).map(Stream::User))
    }
}

/// Each identity once, in order.
fn distinct(ids: &[Identity]) -> impl Iterator<Item = &Identity> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .enumerate()
        .filter(move |(i, id)| {
            if ids.len() <= 16 {
                !ids[..*i].contains(id)
            } else {
                seen.insert(*id)
            }
        })
        .map(|(_, id)| id)
}

/// Addresses every connection of one or more identities: `to(7)`, `to("alice")`,
/// `to([1, 2, 3])`, `to(vec_of_ids)`, `to(&ids[..])`, `to(caller.identity())` (nobody when the
/// caller is anonymous). For several identities as separate arguments, as Python's
/// `to(1, 2, 3)`, use the [`to!`](macro@crate::to) macro: a function takes one argument, and
/// `to(1, 2, 3)` does not compile. Integer and string identities never match each other:
/// `to(7)` does not reach `"7"`.
///
/// ```no_run
/// # #[ephaptic::event] pub struct Notice { message: String }
/// # async fn run(caller: ephaptic::Caller) {
/// ephaptic::to([1, 2, 3]).emit(Notice { message: "your order shipped".into() }).await;
/// ephaptic::to!(1, 2, 3).emit(Notice { message: "the same".into() }).await;
/// // Every tab and device of the caller's own user:
/// ephaptic::to(caller.identity()).emit(Notice { message: "saved".into() }).await;
/// # }
/// ```
pub fn to(ids: impl IntoTargets) -> Audience {
    Audience::users(ids)
}

/// Addresses every connection in a group (see [`Caller::join`](crate::Caller::join)).
pub fn group(name: impl Into<String>) -> Audience {
    Audience::group(name)
}

/// One identity or a collection of them, for [`to`].
pub trait IntoTargets {
    /// The identities.
    fn into_targets(self) -> Vec<Identity>;
}

macro_rules! targets {
    ($($t:ty),*) => {$(
        impl IntoTargets for $t {
            fn into_targets(self) -> Vec<Identity> {
                vec![Identity::from(self)]
            }
        }
        impl<const N: usize> IntoTargets for [$t; N] {
            fn into_targets(self) -> Vec<Identity> {
                self.into_iter().map(Identity::from).collect()
            }
        }
        impl IntoTargets for Vec<$t> {
            fn into_targets(self) -> Vec<Identity> {
                self.into_iter().map(Identity::from).collect()
            }
        }
        impl IntoTargets for &[$t] {
            fn into_targets(self) -> Vec<Identity> {
                self.iter().cloned().map(Identity::from).collect()
            }
        }
        impl IntoTargets for &Vec<$t> {
            fn into_targets(self) -> Vec<Identity> {
                self.iter().cloned().map(Identity::from).collect()
            }
        }
    )*};
}

targets!(
    i8,
    i16,
    i32,
    i64,
    u8,
    u16,
    u32,
    u64,
    isize,
    usize,
    bool,
    String,
    &str,
    uuid::Uuid,
    Identity
);

impl IntoTargets for &String {
    fn into_targets(self) -> Vec<Identity> {
        vec![Identity::from(self)]
    }
}

impl IntoTargets for &Identity {
    fn into_targets(self) -> Vec<Identity> {
        vec![self.clone()]
    }
}

/// `None` addresses nobody: `to(caller.identity())` for an anonymous caller sends nothing.
impl<T: IntoTargets> IntoTargets for Option<T> {
    fn into_targets(self) -> Vec<Identity> {
        self.map_or_else(Vec::new, IntoTargets::into_targets)
    }
}

/// Addresses every connection of each identity listed, which may be of different kinds:
/// `to!(1, 2, 3)`, `to!("alice", user_id)`. The form of Python ephaptic's `to(1, 2, 3)`; the
/// same as [`to`](fn@crate::to) with an array when they are all one type.
///
/// ```no_run
/// # #[ephaptic::event] pub struct Notice { message: String }
/// # async fn run() {
/// ephaptic::to!(1, 2, 3).emit(Notice { message: "your order shipped".into() }).await;
/// # }
/// ```
#[macro_export]
macro_rules! to {
    ($($id:expr),+ $(,)?) => {
        $crate::Audience::Users(::std::vec![$($crate::Identity::from($id)),+])
    };
}
