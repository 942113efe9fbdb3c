//! The three files of `/etc` a pod's containers get from the runtime, as the kubelet and
//! podman write them: `hosts`, `hostname` and `resolv.conf`.

use std::net::IpAddr;
use std::path::Path;

/// Where systemd-resolved lists the upstream servers its stub (127.0.0.53) forwards to.
pub const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";
/// Used when the host has no resolver but loopback ones, as podman does.
const FALLBACK_SERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/hosts`: localhost, the pod's own addresses under its host name, then the extra
/// entries (`--add-host`, `hostAliases`) in order.
pub fn hosts(hostname: &str, addresses: &[IpAddr], extra: &[(String, IpAddr)]) -> String {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ip in addresses {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if addresses.is_empty() {
        // No address of its own (no network, or the host's): the name still resolves.
        text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for (name, ip) in extra {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    text
}

/// What `resolv.conf` the pod gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsSettings {
    /// `--dns`: these servers instead of the host's.
    #[serde(default)]
    pub servers: Vec<IpAddr>,
    /// `--dns-search`: these search domains instead of the host's.
    #[serde(default)]
    pub search: Vec<String>,
    /// Resolver options (`dnsConfig.options`), added to the host's.
    #[serde(default)]
    pub options: Vec<String>,
}

/// `/etc/resolv.conf` from the host's (`host`, the text of `/etc/resolv.conf`), with
/// loopback servers, which mean nothing inside the pod's own network namespace, replaced by
/// the upstream ones systemd-resolved lists in `upstreams` (when it runs), else by public
/// ones; `dns` overrides servers and search domains.
pub fn resolv_conf(host: &str, upstreams: Option<&str>, dns: &DnsSettings) -> String {
    let (mut servers, mut search, mut options) = parse(host);
    if servers.iter().any(|s| is_loopback(s)) {
        let upstream: Vec<String> = upstreams
            .map(|u| parse(u).0)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !is_loopback(s))
            .collect();
        servers.retain(|s| !is_loopback(s));
        if servers.is_empty() {
            servers = upstream;
        }
        if servers.is_empty() {
            servers = FALLBACK_SERVERS.map(str::to_owned).to_vec();
        }
    }
    if !dns.servers.is_empty() {
        servers = dns.servers.iter().map(ToString::to_string).collect();
    }
    if !dns.search.is_empty() {
        search.clone_from(&dns.search);
    }
    options.extend(dns.options.iter().cloned());
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for server in servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

/// The host's `resolv.conf` for a pod: read from `/etc/resolv.conf` (and systemd-resolved's
/// upstreams), rewritten by [`resolv_conf`].
pub fn host_resolv_conf(dns: &DnsSettings) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = std::fs::read_to_string(Path::new(RESOLVED_UPSTREAMS)).ok();
    resolv_conf(&host, upstreams.as_deref(), dns)
}

type Parsed = (Vec<String>, Vec<String>, Vec<String>);

fn parse(text: &str) -> Parsed {
    let (mut servers, mut search, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_owned)),
            // The last search or domain line wins, as in the resolver.
            Some("search" | "domain") => search = words.map(str::to_owned).collect(),
            Some("options") => options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    (servers, search, options)
}

fn is_loopback(server: &str) -> bool {
    server.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_resolver_is_replaced_by_its_upstreams() {
        let host = "# managed\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        let upstreams = "nameserver 192.0.2.53\nnameserver 198.51.100.53\nsearch lan\n";
        assert_eq!(
            resolv_conf(host, Some(upstreams), &DnsSettings::default()),
            "search lan\nnameserver 192.0.2.53\nnameserver 198.51.100.53\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf(host, None, &DnsSettings::default()),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\noptions edns0 trust-ad\n"
        );
        let dns = DnsSettings {
            servers: vec!["10.0.0.2".parse().expect("ip")],
            search: vec!["example.org".into()],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            resolv_conf("nameserver 192.0.2.1\n", None, &dns),
            "search example.org\nnameserver 10.0.0.2\noptions ndots:2\n"
        );
    }

    #[test]
    fn hosts_name_the_pod_and_the_extra_entries() {
        let text = hosts(
            "web",
            &["10.9.0.5".parse().expect("ip")],
            &[("db".into(), "10.9.0.9".parse().expect("ip"))],
        );
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("10.9.0.5\tweb\n"), "{text}");
        assert!(text.ends_with("10.9.0.9\tdb\n"), "{text}");
    }
}
