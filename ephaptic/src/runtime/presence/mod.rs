//! Presence: who is in a group, with typed metadata, on one server and across many.
//!
//! A connection tracks itself in a group with a meta (`caller.presence("room:1").track(meta)`);
//! its entry goes when it untracks or closes. Members are identities (`s:alice`), not
//! connections: a user with three tabs is one member with three connections, joining with the
//! first and leaving with the last. Where the entries live is a [`Store`]: this server's
//! memory, or Redis with entries that expire unless their server refreshes them.
//!
//! Clients watch a group through reserved calls (`__ephaptic.presence.watch`: authorise,
//! subscribe, answer a snapshot) and then receive diffs as `__ephaptic.presence` events sent to
//! an internal group (`__ephaptic.presence:<group>`) through the delivery seam, so diffs cross
//! servers on the existing group channels. Changes are batched per group (every 200 ms by
//! default, bounded per frame), so a mass reconnect is a few frames, not a storm. Old clients
//! never call these names, never join the internal group, and see nothing.

mod handles;
mod store;
mod tracker;
mod types;

pub(crate) use self::handles::reserved;
pub use self::handles::{CallerPresence, Presence, presence};
#[cfg(all(test, feature = "redis"))]
pub(crate) use self::store::Memory;
pub(crate) use self::store::Store;
#[cfg(feature = "redis")]
pub(crate) use self::store::{Changes, Entry, Joined, Left, Listing, Mine};
pub(crate) use self::tracker::{Host, Settings, Tracker};
pub use self::types::{
    EVENT, PresenceConn, PresenceCount, PresenceDiff, PresenceLeave, PresenceList, PresenceMember,
};

/// Declares the type connections track themselves with, so that the generated `schema.ts`
/// types presence with it: the event `__ephaptic.presence` (`PresenceDiff<Meta>`) and the
/// client's `client.presence<Meta>(group)`. Once per application; the type must derive
/// TypeScript (`#[ephaptic::model]`). Apps whose groups track different shapes use an enum.
///
/// ```
/// #[ephaptic::model]
/// pub struct Online { pub name: String, pub typing: bool }
///
/// ephaptic::presence_meta!(Online);
/// ```
#[macro_export]
macro_rules! presence_meta {
    ($meta:ty) => {
        const _: () = {
            fn __ephaptic_presence_ty() -> $crate::__private::ts::TypeInfo {
                $crate::__private::ts::TypeInfo::of::<$crate::PresenceDiff<$meta>>()
            }
            static __EPHAPTIC_PRESENCE: $crate::__private::EventDef = $crate::__private::EventDef {
                name: $crate::__private::PRESENCE_EVENT,
                site: $crate::__private::Site {
                    rust_name: ::std::stringify!($meta),
                    module: ::std::module_path!(),
                    file: ::std::file!(),
                    line: ::std::line!(),
                },
                doc: "Presence diffs of the groups this client watches (`client.presence(group)`).",
                ty: __ephaptic_presence_ty,
            };
            $crate::__private::inventory::submit! {
                $crate::__private::Registration::Event(&__EPHAPTIC_PRESENCE)
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::store::Entry;
    use super::tracker::members;
    use super::types::{EVENT, watchers};

    #[test]
    fn entries_group_into_members_in_order() {
        let e = |m: &str, c: &str| Entry {
            member: m.into(),
            conn: c.into(),
            meta: Bytes::from_static(b"\x01"),
        };
        let got = members(vec![e("a", "1"), e("a", "2"), e("b", "3")], |m| Ok(m[0])).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].connections.len(), 2);
        assert_eq!(got[1].key, "b");
    }

    #[test]
    fn reserved_names_are_only_the_presence_calls() {
        assert_eq!(watchers("room:1"), "__ephaptic.presence:room:1");
        assert!(EVENT.starts_with("__ephaptic."));
    }
}
