//! Which network addresses outbound deliveries may reach.
//!
//! A webhook URL is chosen by a customer; without this check it could point hookline
//! at the cloud metadata service or an internal admin port (server-side request
//! forgery). The check runs on every address a name resolves to, and the connection is
//! made to the checked address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses deliveries may reach: public ones always; non-public ones only when
/// every network is allowed (development) or the address is in an allowed network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow every address (`delivery.allow_private_networks`).
    pub allow_private_networks: bool,
    /// Networks allowed although not public (`delivery.allowed_networks`).
    pub allowed_networks: Vec<ipnet::IpNet>,
}

impl AddressPolicy {
    /// Whether a delivery may connect to `ip`. Judged by the address the connection
    /// really goes to: an IPv4-mapped address (`::ffff:a.b.c.d`) is a connection to
    /// `a.b.c.d`, so it is matched as that too; every other IPv6 form is matched as the
    /// IPv6 address it is (a NAT64 or IPv4-compatible address names an IPv6 host, so
    /// allowing `127.0.0.1/32` does not allow `64:ff9b::127.0.0.1`).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow_private_networks || is_public(ip) {
            return true;
        }
        let connected = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allowed_networks.iter().any(|network| network.contains(&connected) || network.contains(&ip))
    }
}

/// Whether `ip` is a public unicast address an outbound delivery may reach by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240; // reserved and broadcast
    !blocked
}

/// Public IPv6 is global unicast (`2000::/3`) outside the special-purpose blocks, or a
/// form that reaches an IPv4 host judged by the IPv4 address it embeds. Everything
/// else (loopback, unspecified, unique and link local, multicast, the reserved
/// `::/8` and `100::/8`, NAT64 local use, Teredo, documentation) is not.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let special = match s[0] {
        // IETF protocol assignments 2001::/23 (Teredo, ORCHID, benchmarking) and
        // documentation 2001:db8::/32.
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        0x3fff => s[1] < 0x1000, // documentation 3fff::/20
        0x5f00 => true,          // SRv6 segment identifiers 5f00::/16
        _ => false,
    };
    global_unicast && !special
}

/// The IPv4 address inside the IPv6 forms that carry one to an IPv4 host:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64's
/// well-known prefix `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48`.
/// IPv4-compatible `::a.b.c.d` (deprecated) and NAT64 local use `64:ff9b:1::/48` are
/// not among them: they are refused whatever they embed.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff;
    let translated = s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0;
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0];
    if mapped || translated || nat64 {
        return Some(tail);
    }
    (s[0] == 0x2002).then(|| Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form the policy judges, with its verdict: what a reviewer of an SSRF
    /// guard tries, and what the public internet must still reach.
    const FORMS: &[(&str, bool)] = &[
        // IPv4 special-purpose ranges.
        ("0.0.0.0", false),
        ("0.1.2.3", false),
        ("127.0.0.1", false),
        ("127.255.255.254", false),
        ("10.1.2.3", false),
        ("172.16.0.1", false),
        ("172.31.255.255", false),
        ("192.168.1.1", false),
        ("169.254.169.254", false),
        ("100.64.0.1", false),
        ("100.127.255.255", false),
        ("192.0.0.8", false),
        ("192.0.2.10", false),
        ("192.88.99.1", false),
        ("198.18.0.1", false),
        ("198.51.100.1", false),
        ("203.0.113.5", false),
        ("224.0.0.1", false),
        ("240.0.0.1", false),
        ("255.255.255.255", false),
        // IPv6 special-purpose ranges.
        ("::", false),
        ("::1", false),
        ("fc00::1", false),
        ("fd12:3456::1", false),
        ("fe80::1", false),
        ("fec0::1", false),
        ("ff02::1", false),
        ("100::1", false),
        ("2001:db8::1", false),
        ("3fff::1", false),
        ("2001::1", false),          // Teredo
        ("2001:2::1", false),        // benchmarking
        ("2001:10::1", false),       // ORCHID
        ("5f00::1", false),          // SRv6
        ("64:ff9b:1::a00:1", false), // NAT64 local use
        ("::0.0.0.2", false),
        // IPv6 forms that carry a non-public IPv4 address.
        ("::ffff:127.0.0.1", false),
        ("::ffff:7f00:1", false),
        ("::ffff:0:127.0.0.1", false), // IPv4-translated
        ("::ffff:0:a9fe:a9fe", false),
        ("::127.0.0.1", false), // IPv4-compatible (deprecated)
        ("::8.8.8.8", false),
        ("64:ff9b::127.0.0.1", false),
        ("64:ff9b::a9fe:a9fe", false),
        ("2002:7f00:1::", false),     // 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", false), // 6to4 of 169.254.169.254
        ("2002:c0a8:101::1", false),  // 6to4 of 192.168.1.1
        // Public addresses, in every form that reaches one.
        ("93.184.216.34", true),
        ("1.1.1.1", true),
        ("8.8.8.8", true),
        ("192.0.3.1", true),
        ("2606:4700:4700::1111", true),
        ("2a00:1450:4001::1", true),
        ("::ffff:8.8.8.8", true),
        ("::ffff:0:8.8.8.8", true),
        ("64:ff9b::808:808", true),
        ("2002:808:808::1", true),
        ("2001:4860:4860::8888", true),
    ];

    #[test]
    fn every_form_is_judged_by_the_address_it_reaches() {
        assert!(FORMS.len() >= 40);
        for &(form, public) in FORMS {
            let ip: IpAddr = form.parse().unwrap();
            assert_eq!(is_public(ip), public, "{form}");
            assert_eq!(AddressPolicy::default().permits(ip), public, "{form}");
        }
    }

    #[test]
    fn allowed_networks_match_the_address_connected_to() {
        let policy = AddressPolicy {
            allow_private_networks: false,
            allowed_networks: vec!["10.1.0.0/16".parse().unwrap(), "127.0.0.1/32".parse().unwrap()],
        };
        assert!(policy.permits("10.1.2.3".parse().unwrap()));
        assert!(!policy.permits("10.2.0.1".parse().unwrap()));
        // A mapped address is a connection to the IPv4 address it maps.
        assert!(policy.permits("::ffff:127.0.0.1".parse().unwrap()));
        // These name IPv6 hosts, whatever IPv4 address they carry.
        for v6 in ["::1", "::127.0.0.1", "64:ff9b::127.0.0.1", "::ffff:0:127.0.0.1", "2002:7f00:1::"] {
            assert!(!policy.permits(v6.parse().unwrap()), "{v6}");
        }
        assert!(policy.permits("8.8.8.8".parse().unwrap()));
        let v6_allowed =
            AddressPolicy { allow_private_networks: false, allowed_networks: vec!["fd00::/8".parse().unwrap()] };
        assert!(v6_allowed.permits("fd12::1".parse().unwrap()));
        assert!(
            AddressPolicy { allow_private_networks: true, allowed_networks: vec![] }.permits("::1".parse().unwrap())
        );
    }
}
