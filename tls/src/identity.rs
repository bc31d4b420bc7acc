//! What a certificate says about its holder: the subject as ZooKeeper's `x509` scheme names it,
//! the cluster member it was issued to, and when it expires.

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::x509::X509Name;

/// A peer certificate names the member it was issued to with this URI in its subject
/// alternative names, followed by the member's Raft id: `urn:paddock:member:3`.
pub const MEMBER_URI_PREFIX: &str = "urn:paddock:member:";

/// The URI subject alternative name of member `id`'s peer certificate.
pub fn member_uri(id: u64) -> String {
    format!("{MEMBER_URI_PREFIX}{id}")
}

fn parse<'a>(cert: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    X509Certificate::from_der(cert.as_ref()).ok().map(|(_, parsed)| parsed)
}

/// The member id of a peer certificate: its one `urn:paddock:member:<id>` URI. `None` for a
/// certificate with none, with two different ones, or that does not parse.
pub fn member_id(cert: &CertificateDer<'_>) -> Option<u64> {
    let parsed = parse(cert)?;
    let names = parsed.subject_alternative_name().ok()??;
    let mut ids = names.value.general_names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix(MEMBER_URI_PREFIX)?.parse::<u64>().ok(),
        _ => None,
    });
    let first = ids.next()?;
    ids.all(|other| other == first).then_some(first)
}

/// When the certificate stops being valid, in seconds since the Unix epoch.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    Some(parse(cert)?.validity().not_after.timestamp())
}

/// The subject of a client certificate as ZooKeeper's `X509AuthenticationProvider` names it:
/// Java's `X500Principal.getName()`, the RFC 2253 form. Relative names in reverse order of the
/// encoding, joined by `,` (several attributes of one name by `+`); the keywords RFC 2253 knows
/// (`CN`, `C`, `L`, `ST`, `O`, `OU`, `STREET`, `DC`, `UID`), any other attribute by its dotted
/// OID with the value as `#` and the hex of its DER encoding; string values escaped as Java
/// escapes them. `None` when the certificate does not parse.
pub fn subject_name(cert: &CertificateDer<'_>) -> Option<String> {
    Some(rfc2253(parse(cert)?.subject()))
}

fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// `sun.security.x509.AVA.toRFC2253String`'s escaping of a string value.
fn escape(value: &str, out: &mut String) {
    let chars: Vec<char> = value.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let leading = i == 0 && (c == ' ' || c == '#');
        let trailing = i + 1 == chars.len() && c == ' ';
        if ",=+<>#;\"\\".contains(c) || leading || trailing {
            out.push('\\');
            out.push(c);
        } else if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
}

fn rfc2253(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (n, rdn) in rdns.iter().rev().enumerate() {
        if n > 0 {
            out.push(',');
        }
        for (m, attribute) in rdn.iter().enumerate() {
            if m > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type().to_id_string();
            let value = attribute.attr_value();
            match (keyword(&oid), value.as_str()) {
                (Some(keyword), Ok(text)) => {
                    out.push_str(keyword);
                    out.push('=');
                    escape(text, &mut out);
                }
                _ => {
                    out.push_str(keyword(&oid).unwrap_or(&oid));
                    out.push_str("=#");
                    let header =
                        value.header.raw_tag().map(<[u8]>::to_vec).unwrap_or_else(|| vec![value.header.tag().0 as u8]);
                    let data = value.data;
                    let mut der = header;
                    der.extend(der_length(data.len()));
                    der.extend_from_slice(data);
                    for byte in der {
                        out.push_str(&format!("{byte:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// A DER length field.
fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_java() {
        let mut out = String::new();
        escape(" a,b+c=d#e\"f\\g<h>i;j ", &mut out);
        assert_eq!(out, "\\ a\\,b\\+c\\=d\\#e\\\"f\\\\g\\<h\\>i\\;j\\ ");
        let mut out = String::new();
        escape("#x", &mut out);
        assert_eq!(out, "\\#x");
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_length(5), vec![5]);
        assert_eq!(der_length(200), vec![0x81, 200]);
        assert_eq!(der_length(300), vec![0x82, 1, 44]);
    }
}
