//! Where the backplane's Redis is, read from its URL: one server (`redis://`, as redis-rs reads
//! it), a master found through Redis Sentinel (`redis+sentinel://`), or a Redis Cluster
//! (`redis+cluster://`). The two `+` schemes list several hosts, which a URL library does not
//! read, so they are split here and each host is read by redis-rs as a `redis://` URL (which
//! decodes a percent-encoded user and password the same way for all three).

use ::redis::{ConnectionInfo, IntoConnectionInfo};

/// What `EPHAPTIC_REDIS_URL` (or `Server::redis`) names.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// One Redis (or Valkey) server.
    Single(ConnectionInfo),
    /// The master named `master`, as the sentinels say; `node` carries the user, password and
    /// database used on the master; each sentinel its own (`sentinel_username` and
    /// `sentinel_password` in the URL's query).
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master: String,
        node: ConnectionInfo,
    },
    /// A Redis Cluster, found from any of its `nodes`.
    Cluster { nodes: Vec<ConnectionInfo> },
}

pub(crate) const SENTINEL: &str = "redis+sentinel://";
pub(crate) const CLUSTER: &str = "redis+cluster://";

impl Target {
    /// Reads `url`; the error says what to write instead (it never shows the password).
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url.strip_prefix(SENTINEL) {
            return sentinel(rest);
        }
        if let Some(rest) = url.strip_prefix(CLUSTER) {
            return cluster(rest);
        }
        url.into_connection_info()
            .map(Target::Single)
            .map_err(|e| format!("it cannot be read: {e}"))
    }

    /// What the start line says of it: "Redis", "Redis Sentinel's master `m`", "a Redis Cluster".
    pub fn kind(&self) -> String {
        match self {
            Target::Single(_) => "Redis".to_owned(),
            Target::Sentinel { master, .. } => format!("Redis Sentinel's master `{master}`"),
            Target::Cluster { .. } => "a Redis Cluster".to_owned(),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }
}

/// `[user:password@]host[:port][,host[:port]...]/master[/db][?sentinel_username=u&sentinel_password=p]`
fn sentinel(rest: &str) -> Result<Target, String> {
    let example = "write redis+sentinel://[user:password@]HOST:PORT[,HOST:PORT...]/MASTER_NAME";
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut sentinel_user, mut sentinel_password) = ("", "");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => sentinel_user = v,
            Some(("sentinel_password", v)) => sentinel_password = v,
            _ => {
                let name = pair.split('=').next().unwrap_or(pair);
                return Err(format!(
                    "it has an unknown setting {name:?}: a Sentinel URL takes sentinel_username \
                     and sentinel_password (the sentinels' own credentials)"
                ));
            }
        }
    }
    let sentinel_auth = (!sentinel_user.is_empty() || !sentinel_password.is_empty())
        .then(|| format!("{sentinel_user}:{sentinel_password}"));
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("it names no master: {example}"))?;
    let mut path = path.split('/');
    let master = path.next().unwrap_or_default();
    if master.is_empty() {
        return Err(format!("it names no master: {example}"));
    }
    let db = path.next().filter(|d| !d.is_empty());
    let (userinfo, hosts) = split_userinfo(hosts);
    let sentinels = hosts
        .split(',')
        .map(|host| node(host, 26379, sentinel_auth.as_deref(), None))
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err(format!("it lists no sentinel: {example}"));
    }
    // The master's own settings: the user and password of the URL, and its database.
    let node = node("placeholder", 6379, userinfo, db)?;
    Ok(Target::Sentinel {
        sentinels,
        master: master.to_owned(),
        node,
    })
}

/// `[user:password@]host[:port][,host[:port]...]`
fn cluster(rest: &str) -> Result<Target, String> {
    let example = "write redis+cluster://[user:password@]HOST:PORT[,HOST:PORT...]";
    let hosts = rest.trim_end_matches('/');
    if hosts.contains('/') {
        return Err(format!(
            "a Redis Cluster has no databases or names after the hosts: {example}"
        ));
    }
    let (userinfo, hosts) = split_userinfo(hosts);
    let nodes = hosts
        .split(',')
        .map(|host| node(host, 6379, userinfo, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Target::Cluster { nodes })
}

fn split_userinfo(hosts: &str) -> (Option<&str>, &str) {
    match hosts.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, hosts),
    }
}

/// One host of the list, read by redis-rs as `redis://[userinfo@]host[:port][/db]`.
fn node(
    host: &str,
    default_port: u16,
    userinfo: Option<&str>,
    db: Option<&str>,
) -> Result<ConnectionInfo, String> {
    if host.is_empty() {
        return Err("it has an empty host (two commas, or none before the slash)".to_owned());
    }
    let has_port = match host.rsplit_once(':') {
        // `[::1]:6379` has one, `[::1]` not.
        Some((before, _)) => !host.starts_with('[') || before.ends_with(']'),
        None => false,
    };
    let port = if has_port {
        String::new()
    } else {
        format!(":{default_port}")
    };
    let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let db = db.map(|d| format!("/{d}")).unwrap_or_default();
    format!("redis://{auth}{host}{port}{db}")
        .as_str()
        .into_connection_info()
        .map_err(|e| {
            // redis-rs's message may quote the URL; ours names the host only.
            let e = e.to_string().replace(auth.as_str(), "");
            format!("its host {host:?} cannot be read: {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::redis::ConnectionAddr;

    fn tcp(addr: &ConnectionAddr) -> (String, u16) {
        match addr {
            ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
            other => panic!("not tcp: {other:?}"),
        }
    }

    #[test]
    fn sentinel_urls_list_sentinels_and_name_the_master() {
        let Target::Sentinel {
            sentinels,
            master,
            node,
        } = Target::parse(
            "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2/mymaster/2?sentinel_password=s%26",
        )
        .unwrap()
        else {
            panic!("not sentinel")
        };
        assert_eq!(master, "mymaster");
        assert_eq!(
            sentinels.iter().map(|s| tcp(s.addr())).collect::<Vec<_>>(),
            [("10.0.0.1".into(), 26380), ("10.0.0.2".into(), 26379)]
        );
        // The sentinels' own password, apart from the master's.
        assert!(
            sentinels
                .iter()
                .all(|s| s.redis_settings().password() == Some("s&"))
        );
        assert_eq!(node.redis_settings().password(), Some("p@ss"));
        assert_eq!(node.redis_settings().username(), Some("app"));
        assert_eq!(node.redis_settings().db(), 2);
    }

    #[test]
    fn cluster_urls_list_nodes_with_their_password() {
        let Target::Cluster { nodes } =
            Target::parse("redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001,[::1]").unwrap()
        else {
            panic!("not cluster")
        };
        assert_eq!(nodes.len(), 3);
        assert_eq!(tcp(nodes[1].addr()), ("127.0.0.1".into(), 7001));
        assert_eq!(tcp(nodes[2].addr()).1, 6379);
        assert!(
            nodes
                .iter()
                .all(|n| n.redis_settings().password() == Some("s3cret"))
        );
    }

    #[test]
    fn mistakes_say_what_to_write_without_the_password() {
        let e = Target::parse("redis+sentinel://:pw@h1,h2").unwrap_err();
        assert!(
            e.contains("names no master") && e.contains("MASTER_NAME"),
            "{e}"
        );
        let e = Target::parse("redis+sentinel://h1,,h2/m").unwrap_err();
        assert!(e.contains("empty host"), "{e}");
        let e = Target::parse("redis+sentinel://h1/m?password=x").unwrap_err();
        assert!(e.contains("sentinel_password") && !e.contains("=x"), "{e}");
        let e = Target::parse("redis+cluster://:pw@h1:7000/0").unwrap_err();
        assert!(e.contains("no databases"), "{e}");
        let e = Target::parse("redis+cluster://:pw@h1:notaport").unwrap_err();
        assert!(e.contains("h1:notaport") && !e.contains("pw"), "{e}");
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/0"),
            Ok(Target::Single(_))
        ));
    }
}
