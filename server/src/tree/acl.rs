//! ACL semantics: validating and expanding a client's ACL (`PrepRequestProcessor.fixupACL`),
//! permission checks (`ZooKeeperServer.checkACL`) for the schemes ZooKeeper registers by default
//! (`world`, `auth`, `digest`, `ip`, plus the `super` identity), the `x509` scheme of TLS client
//! certificates (`X509AuthenticationProvider`), and digest ids.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use crate::proto::{Acl, ErrorCode, Id};

/// The digest id for `user:password`, exactly as ZooKeeper's
/// `DigestAuthenticationProvider.generateDigest`: `user:` + base64(sha1(`user:password`)).
/// The user is everything before the first `:` (the whole string when there is none).
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Whether `auth` holds one of the permission bits in `perm` under `acl`. An empty ACL allows
/// everything and a `super` identity passes every check, as in ZooKeeper. `digest` entries match
/// an auth id of the same scheme and id; `ip` entries match an `ip` auth id inside the address or
/// CIDR range (IPv4 or IPv6).
pub fn acl_allows(acl: &[Acl], perm: i32, auth: &[Id]) -> bool {
    if acl.is_empty() || auth.iter().any(|id| id.scheme == "super") {
        return true;
    }
    acl.iter().filter(|entry| entry.perms & perm != 0).any(|entry| {
        let id = &entry.id;
        if id.scheme == "world" && id.id == "anyone" {
            return true;
        }
        let matches: fn(&str, &str) -> bool = match id.scheme.as_str() {
            "digest" | "x509" | "sasl" | "k8s" => |auth_id, acl_id| auth_id == acl_id,
            "ip" => ip_matches,
            _ => return false,
        };
        auth.iter().any(|a| a.scheme == id.scheme && matches(&a.id, &id.id))
    })
}

/// Validates a client's ACL and expands `auth` entries into one entry per authenticated id of
/// the requester (its `digest` ids), dropping exact duplicates first. `InvalidAcl` when the list is
/// empty, names an unknown scheme, is `world` with an id other than `anyone`, is a malformed `ip`
/// or `digest` id, or is `auth` while the requester has no authenticated id.
pub(super) fn fixup_acl(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for entry in acl {
        if !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut fixed = Vec::with_capacity(unique.len());
    for entry in unique {
        let id = &entry.id;
        if id.scheme == "world" && id.id == "anyone" {
            fixed.push(entry.clone());
        } else if id.scheme == "auth" {
            // Only providers that say `isAuthenticated()` expand: digest, x509, sasl (and
            // Paddock's k8s) do, ip
            // does not, and `super` has no provider at all.
            let before = fixed.len();
            fixed.extend(
                auth.iter()
                    .filter(|a| matches!(a.scheme.as_str(), "digest" | "x509" | "sasl" | "k8s"))
                    .map(|a| Acl { perms: entry.perms, id: a.clone() }),
            );
            if fixed.len() == before {
                return Err(ErrorCode::InvalidAcl);
            }
        } else {
            let valid = match id.scheme.as_str() {
                "digest" => digest_id_is_valid(&id.id),
                "x509" => x509_id_is_valid(&id.id),
                "sasl" => sasl_id_is_valid(&id.id),
                "k8s" => k8s_id_is_valid(&id.id),
                "ip" => ip_expr_is_valid(&id.id),
                _ => false,
            };
            if !valid {
                return Err(ErrorCode::InvalidAcl);
            }
            fixed.push(entry.clone());
        }
    }
    Ok(fixed)
}

/// A Kubernetes namespace name: a DNS label.
fn k8s_namespace_is_valid(namespace: &str) -> bool {
    !namespace.is_empty()
        && namespace.len() <= 63
        && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-')
}

/// Whether `id` is a `k8s` id (Kubernetes identities, `crate::k8s`): `ns:<namespace>` or
/// `sa:<namespace>:<name>`.
pub fn k8s_id_is_valid(id: &str) -> bool {
    if let Some(namespace) = id.strip_prefix("ns:") {
        return k8s_namespace_is_valid(namespace);
    }
    match id.strip_prefix("sa:").and_then(|rest| rest.split_once(':')) {
        Some((namespace, name)) => k8s_namespace_is_valid(namespace) && !name.is_empty() && !name.contains(':'),
        None => false,
    }
}

/// `DigestAuthenticationProvider.isValid`: Java's `id.split(":").length == 2`, where `split`
/// drops trailing empty strings (so `"a:"` is invalid but `"a:b:"` is valid).
fn digest_id_is_valid(id: &str) -> bool {
    if !id.contains(':') {
        return false;
    }
    let mut parts: Vec<&str> = id.split(':').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts.len() == 2
}

/// `X509AuthenticationProvider.isValid` asks Java whether the id parses as an X.500 name; this
/// takes what has the name's shape: `type=value` pairs separated by `,` or `+`, none empty
/// (an escaped separator does not separate).
fn x509_id_is_valid(id: &str) -> bool {
    let mut parts = Vec::new();
    let (mut current, mut escaped) = (String::new(), false);
    for c in id.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => {
                current.push(c);
                escaped = true;
            }
            ',' | '+' | ';' => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts.iter().all(|part| part.split_once('=').is_some_and(|(kind, _)| !kind.trim().is_empty()))
}

/// `SASLAuthenticationProvider.isValid`: the id parses as a Kerberos principal,
/// `name[/host][@REALM]`, no part empty.
fn sasl_id_is_valid(id: &str) -> bool {
    let (rest, realm) = match id.split_once('@') {
        Some((rest, realm)) => (rest, Some(realm)),
        None => (id, None),
    };
    let (name, host) = match rest.split_once('/') {
        Some((name, host)) => (name, Some(host)),
        None => (rest, None),
    };
    let part_ok = |part: &str| !part.is_empty() && !part.contains(['/', '@']);
    part_ok(name) && host.is_none_or(part_ok) && realm.is_none_or(part_ok)
}

/// `IPAuthenticationProvider.isValid`: an address, optionally `/bits` within its length.
fn ip_expr_is_valid(expr: &str) -> bool {
    parse_ip_expr(expr).is_some()
}

/// `IPAuthenticationProvider.matches`: `id` (a client address) lies inside `expr`.
fn ip_matches(id: &str, expr: &str) -> bool {
    let Some((mut acl_addr, bits)) = parse_ip_expr(expr) else {
        return false;
    };
    let Some(mut remote) = addr_to_bytes(id) else {
        return false;
    };
    mask(&mut acl_addr, bits);
    mask(&mut remote, bits);
    remote == acl_addr
}

fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (expr, None),
    };
    let addr = addr_to_bytes(addr)?;
    let max = addr.len() * 8;
    let bits = match bits {
        None => max,
        Some(bits) => usize::try_from(bits.parse::<i32>().ok()?).ok().filter(|b| *b <= max)?,
    };
    Some((addr, bits))
}

/// ZooKeeper's `addr2Bytes`: IPv6 when there is a colon, IPv4 when there is a dot.
fn addr_to_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        v6_to_bytes(addr)
    } else if addr.contains('.') {
        v4_to_bytes(addr)
    } else {
        None
    }
}

fn v4_to_bytes(addr: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts.iter().map(|p| p.parse::<i32>().ok().and_then(|v| u8::try_from(v).ok())).collect()
}

fn v6_to_bytes(addr: &str) -> Option<Vec<u8>> {
    let halves: Vec<&str> = addr.split("::").collect();
    let segments = |s: &str| -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split(':').map(str::to_owned).collect()
        }
    };
    let (head, tail) = match halves.as_slice() {
        [full] => {
            let head: Vec<String> = full.split(':').map(str::to_owned).collect();
            if head.len() != 8 {
                return None;
            }
            (head, Vec::new())
        }
        [head, tail] => {
            let (head, tail) = (segments(head), segments(tail));
            if head.len() + tail.len() >= 8 {
                return None;
            }
            (head, tail)
        }
        _ => return None,
    };
    let mut out = vec![0u8; 16];
    let mut write = |start: usize, segs: &[String]| -> Option<()> {
        for (i, seg) in segs.iter().enumerate() {
            if seg.is_empty() || seg.len() > 4 {
                return None;
            }
            let value = i32::from_str_radix(seg, 16).ok()?;
            let at = start + 2 * i;
            *out.get_mut(at)? = ((value >> 8) & 0xff) as u8;
            *out.get_mut(at + 1)? = (value & 0xff) as u8;
        }
        Some(())
    };
    write(0, &head)?;
    write(16 - 2 * tail.len(), &tail)?;
    Some(out)
}

/// Keeps the first `bits` bits.
fn mask(bytes: &mut [u8], bits: usize) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *byte &= !(0xffu16 >> keep) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::perms;

    #[test]
    fn k8s_ids_name_a_namespace_or_a_service_account_and_match_exactly() {
        for good in ["ns:default", "sa:default:app", "ns:a-1"] {
            assert!(k8s_id_is_valid(good), "{good}");
        }
        for bad in ["default", "ns:", "ns:Upper", "sa:default", "sa:default:", "sa:-x:y", "sa:a:b:c", "user:x"] {
            assert!(!k8s_id_is_valid(bad), "{bad}");
        }
        let entry = [acl(perms::READ, "k8s", "ns:shop")];
        assert!(acl_allows(&entry, perms::READ, &[Id::new("k8s", "ns:shop"), Id::new("k8s", "sa:shop:cart")]));
        assert!(!acl_allows(&entry, perms::READ, &[Id::new("k8s", "ns:shop-2")]));
        assert!(fixup_acl(&[acl(perms::ALL, "k8s", "ns:Bad")], &[]).is_err());
        // `auth` ACLs take the session's k8s ids.
        let auth = [Id::new("ip", "10.0.0.1"), Id::new("k8s", "ns:shop"), Id::new("k8s", "sa:shop:cart")];
        let fixed = fixup_acl(&[acl(perms::ALL, "auth", "")], &auth).expect("auth expands");
        assert_eq!(fixed.iter().map(|a| a.id.id.as_str()).collect::<Vec<_>>(), ["ns:shop", "sa:shop:cart"]);
    }

    #[test]
    fn x509_ids_match_exactly_and_expand_auth() {
        let subject = "CN=app,O=paddock";
        let entry = [acl(perms::READ, "x509", subject)];
        assert!(acl_allows(&entry, perms::READ, &[Id::new("x509", subject)]));
        assert!(!acl_allows(&entry, perms::READ, &[Id::new("x509", "CN=other,O=paddock")]));
        assert!(!acl_allows(&entry, perms::READ, &[Id::new("digest", subject)]));
        assert!(!acl_allows(&entry, perms::WRITE, &[Id::new("x509", subject)]));
        let auth = [Id::new("ip", "127.0.0.1"), Id::new("x509", subject)];
        let fixed = fixup_acl(&[acl(perms::ALL, "auth", "")], &auth).expect("x509 is an authenticated scheme");
        assert_eq!(fixed, vec![acl(perms::ALL, "x509", subject)]);
        assert!(fixup_acl(&[acl(perms::ALL, "x509", subject)], &[]).is_ok());
        for bad in ["", "CN", "=x", "CN=a,", "CN=a,,O=b"] {
            assert_eq!(fixup_acl(&[acl(perms::ALL, "x509", bad)], &[]), Err(ErrorCode::InvalidAcl), "{bad:?}");
        }
        assert!(fixup_acl(&[acl(perms::ALL, "x509", "CN=a\\,b+OU=c")], &[]).is_ok());
    }

    #[test]
    fn sasl_ids_are_kerberos_principals() {
        let entry = [acl(perms::ALL, "sasl", "bob")];
        assert!(acl_allows(&entry, perms::READ, &[Id::new("sasl", "bob")]));
        assert!(!acl_allows(&entry, perms::READ, &[Id::new("sasl", "alice")]));
        assert!(!acl_allows(&entry, perms::READ, &[Id::new("digest", "bob")]));
        let fixed = fixup_acl(&[acl(perms::ALL, "auth", "")], &[Id::new("sasl", "bob")]).expect("expands");
        assert_eq!(fixed, vec![acl(perms::ALL, "sasl", "bob")]);
        for good in ["bob", "zookeeper/host", "bob@EXAMPLE.COM", "svc/host@REALM"] {
            assert!(fixup_acl(&[acl(perms::ALL, "sasl", good)], &[]).is_ok(), "{good:?}");
        }
        for bad in ["", "/host", "a/b/c", "a@b@c", "a@", "a/"] {
            assert_eq!(fixup_acl(&[acl(perms::ALL, "sasl", bad)], &[]), Err(ErrorCode::InvalidAcl), "{bad:?}");
        }
    }

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl { perms, id: Id::new(scheme, id) }
    }

    #[test]
    fn digest_id_matches_zookeeper() {
        assert_eq!(digest_id("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
        // No colon: the whole string is the user.
        assert!(digest_id("bob").starts_with("bob:"));
        // Only the first colon separates the user.
        assert!(digest_id("a:b:c").starts_with("a:"));
    }

    #[test]
    fn world_anyone_allows_everyone() {
        let open = Acl::open_unsafe();
        assert!(acl_allows(&open, perms::READ, &[]));
        let read_only = [acl(perms::READ, "world", "anyone")];
        assert!(acl_allows(&read_only, perms::READ, &[]));
        assert!(!acl_allows(&read_only, perms::WRITE, &[]));
        // Any one of several bits is enough, as in ZooKeeper (`perms & perm != 0`).
        assert!(acl_allows(&read_only, perms::READ | perms::ADMIN, &[]));
    }

    #[test]
    fn empty_acl_allows_everything() {
        assert!(acl_allows(&[], perms::ADMIN, &[]));
    }

    #[test]
    fn digest_matches_same_id() {
        let bob = digest_id("bob:secret");
        let entry = [Acl { perms: perms::ALL, id: Id::new("digest", bob.clone()) }];
        assert!(acl_allows(&entry, perms::WRITE, &[Id::new("digest", bob.clone())]));
        assert!(!acl_allows(&entry, perms::WRITE, &[Id::new("digest", digest_id("bob:wrong"))]));
        // Scheme must match too.
        assert!(!acl_allows(&entry, perms::WRITE, &[Id::new("ip", bob)]));
        assert!(!acl_allows(&entry, perms::WRITE, &[]));
    }

    #[test]
    fn super_passes_every_check() {
        let entry = [acl(perms::READ, "digest", "x:y")];
        assert!(acl_allows(&entry, perms::ADMIN, &[Id::new("super", "")]));
    }

    #[test]
    fn ip_matches_address_and_cidr() {
        let ip = |addr: &str| vec![Id::new("ip", addr)];
        let exact = [acl(perms::ALL, "ip", "10.1.2.3")];
        assert!(acl_allows(&exact, perms::READ, &ip("10.1.2.3")));
        assert!(!acl_allows(&exact, perms::READ, &ip("10.1.2.4")));

        let net8 = [acl(perms::ALL, "ip", "10.0.0.0/8")];
        assert!(acl_allows(&net8, perms::READ, &ip("10.200.3.4")));
        assert!(!acl_allows(&net8, perms::READ, &ip("11.0.0.1")));

        let net20 = [acl(perms::ALL, "ip", "192.168.16.0/20")];
        assert!(acl_allows(&net20, perms::READ, &ip("192.168.31.255")));
        assert!(!acl_allows(&net20, perms::READ, &ip("192.168.32.0")));

        let all = [acl(perms::ALL, "ip", "0.0.0.0/0")];
        assert!(acl_allows(&all, perms::READ, &ip("8.8.8.8")));
        // An IPv6 client never matches an IPv4 entry.
        assert!(!acl_allows(&all, perms::READ, &ip("::1")));

        let v6 = [acl(perms::ALL, "ip", "2001:db8::/32")];
        assert!(acl_allows(&v6, perms::READ, &ip("2001:db8:1:2::5")));
        assert!(acl_allows(&v6, perms::READ, &ip("2001:0db8:0:0:0:0:0:1")));
        assert!(!acl_allows(&v6, perms::READ, &ip("2001:db9::1")));
        assert!(!acl_allows(&v6, perms::READ, &ip("10.0.0.1")));

        let loopback = [acl(perms::ALL, "ip", "::1")];
        assert!(acl_allows(&loopback, perms::READ, &ip("0:0:0:0:0:0:0:1")));
        assert!(!acl_allows(&loopback, perms::READ, &ip("::2")));

        // A digest identity does not satisfy an ip entry.
        assert!(!acl_allows(&exact, perms::READ, &[Id::new("digest", "10.1.2.3")]));
    }

    #[test]
    fn ip_parsing_follows_zookeeper() {
        assert_eq!(v6_to_bytes("2001:db8::8a2e:370:7334").map(|b| b[..4].to_vec()), Some(vec![0x20, 0x01, 0x0d, 0xb8]));
        assert_eq!(v6_to_bytes("::"), Some(vec![0; 16]));
        assert_eq!(v6_to_bytes("1::"), Some([vec![0, 1], vec![0; 14]].concat()));
        for bad in ["1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", "12345::", "g::", "1:2:3:4::5:6:7:8"] {
            assert_eq!(v6_to_bytes(bad), None, "{bad}");
        }
        assert_eq!(v4_to_bytes("1.2.3.4"), Some(vec![1, 2, 3, 4]));
        for bad in ["1.2.3", "1.2.3.4.5", "1.2.3.256", "1.2.3.-1", "a.b.c.d", "1..3.4"] {
            assert_eq!(v4_to_bytes(bad), None, "{bad}");
        }
        assert!(ip_expr_is_valid("10.0.0.0/8"));
        assert!(ip_expr_is_valid("10.0.0.0/32"));
        assert!(!ip_expr_is_valid("10.0.0.0/33"));
        assert!(!ip_expr_is_valid("10.0.0.0/-1"));
        assert!(!ip_expr_is_valid("10.0.0.0/x"));
        assert!(!ip_expr_is_valid("localhost"));
        assert!(ip_expr_is_valid("fe80::/10"));
        assert!(!ip_expr_is_valid("fe80::/129"));
    }

    #[test]
    fn fixup_keeps_valid_entries_and_drops_duplicates() {
        let open = Acl::open_unsafe();
        let doubled = [open.clone(), open.clone()].concat();
        assert_eq!(fixup_acl(&doubled, &[]), Ok(open));
        let mixed = vec![
            acl(perms::READ, "world", "anyone"),
            acl(perms::ALL, "ip", "10.0.0.0/8"),
            acl(perms::ALL, "digest", "bob:hash"),
        ];
        assert_eq!(fixup_acl(&mixed, &[]), Ok(mixed.clone()));
    }

    #[test]
    fn fixup_rejects_invalid_entries() {
        for bad in [
            vec![],
            vec![acl(perms::ALL, "world", "someone")],
            vec![acl(perms::ALL, "nope", "x")],
            vec![acl(perms::ALL, "super", "")],
            vec![acl(perms::ALL, "ip", "10.0.0")],
            vec![acl(perms::ALL, "ip", "10.0.0.0/40")],
            vec![acl(perms::ALL, "digest", "nocolon")],
            vec![acl(perms::ALL, "digest", "a:")],
            vec![acl(perms::ALL, "digest", "a:b:c")],
            vec![Acl::open_unsafe()[0].clone(), acl(perms::ALL, "ip", "bad")],
        ] {
            assert_eq!(fixup_acl(&bad, &[]), Err(ErrorCode::InvalidAcl), "{bad:?}");
        }
    }

    #[test]
    fn digest_validity_is_java_split() {
        assert!(digest_id_is_valid("a:b"));
        assert!(digest_id_is_valid(":b"));
        assert!(digest_id_is_valid("a:b:"));
        assert!(!digest_id_is_valid("a::"));
        assert!(!digest_id_is_valid(":"));
        assert!(!digest_id_is_valid(""));
    }

    #[test]
    fn auth_expands_to_digest_ids() {
        let bob = Id::new("digest", digest_id("bob:pw"));
        let carol = Id::new("digest", digest_id("carol:pw"));
        let auth = vec![Id::new("ip", "127.0.0.1"), bob.clone(), Id::new("super", ""), carol.clone()];
        let requested = [acl(perms::READ | perms::WRITE, "auth", "")];
        assert_eq!(
            fixup_acl(&requested, &auth),
            Ok(vec![
                Acl { perms: perms::READ | perms::WRITE, id: bob },
                Acl { perms: perms::READ | perms::WRITE, id: carol },
            ])
        );
        // Only ip and super identities: nothing to expand to.
        let unauthenticated = vec![Id::new("ip", "127.0.0.1"), Id::new("super", "")];
        assert_eq!(fixup_acl(&requested, &unauthenticated), Err(ErrorCode::InvalidAcl));
    }
}
