//! Every address the local clusters use, all inside the benchmarking range
//! 198.18.0.0/15 (RFC 2544), which no real network routes: nothing a pod or
//! a service is given can ever collide with, or leak to, an address outside
//! this machine.
//!
//! | range                 | what                                              |
//! |-----------------------|---------------------------------------------------|
//! | 198.18.0.0/17         | pods of real nodes: slot `s` has 198.18.(32s).0/19, node `n` of it 198.18.(32s+n).0/24, gateway `.1` = the node's IP |
//! | 198.18.128.0/18       | pod IPs KWOK hands out on simulated nodes          |
//! | 198.18.192.0/19       | InternalIPs of simulated nodes                     |
//! | 198.18.255.0/24       | the link between the host and slot `s`'s network namespace: host `.(4s+1)`, namespace `.(4s+2)` |
//! | 198.19.0.0/16         | services of a control plane with simulated nodes only |
//! | 198.19.(64s).0/18     | services of slot `s` (real nodes); `.1` is `kubernetes`, `.10` is DNS |
//!
//! A *slot* is one control plane with real nodes. Several can run at once
//! (a test run next to the local environment), each in its own network
//! namespace with its own ranges, because the host routes each slot's pod
//! and service ranges to that slot's namespace.

use std::net::Ipv4Addr;

/// How many control planes with real nodes may run at once.
pub const SLOTS: u8 = 4;
/// Real nodes per slot (each gets a /24 out of the slot's /19).
pub const MAX_REAL_NODES: u8 = 16;

/// Services of a control plane without real nodes.
pub const SIMULATED_SERVICE_CIDR: &str = "198.19.0.0/16";
/// Pod IPs of simulated nodes (KWOK's pool).
pub const SIMULATED_POD_CIDR: &str = "198.18.128.0/18";
/// What is allowed to leave a pod: the whole benchmarking range, which is
/// only ever inside this machine.
pub const LOCAL_RANGE: &str = "198.18.0.0/15";

/// The InternalIP of the `i`-th simulated node.
pub fn simulated_node_ip(i: usize) -> String {
    format!("198.18.{}.{}", 192 + i / 250, i % 250 + 1)
}

/// The addresses of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub u8);

impl Slot {
    pub fn index(self) -> u8 {
        self.0
    }

    /// The host's end of the link to the slot's namespace: the API server
    /// listens here, so both the host and the pods reach it.
    pub fn host_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 255, 4 * self.0 + 1)
    }

    /// The namespace's end of that link: CoreDNS listens here.
    pub fn namespace_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 255, 4 * self.0 + 2)
    }

    /// The /30 of the link.
    pub fn link_prefix_len(self) -> u8 {
        30
    }

    /// Every pod of every node of the slot.
    pub fn pod_cidr(self) -> String {
        format!("198.18.{}.0/19", 32 * u16::from(self.0))
    }

    /// The pods of node `n`.
    pub fn node_pod_cidr(self, n: u8) -> String {
        format!("198.18.{}.0/24", 32 * u16::from(self.0) + u16::from(n))
    }

    /// Node `n`'s IP: the gateway of its pod bridge.
    pub fn node_ip(self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 32 * self.0 + n, 1)
    }

    pub fn service_cidr(self) -> String {
        format!("198.19.{}.0/18", 64 * u16::from(self.0))
    }

    /// The `kubernetes` Service's ClusterIP (the first of the range).
    pub fn kubernetes_service_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 64 * self.0, 1)
    }

    /// The `kube-dns` Service's ClusterIP, what kubelets give pods as DNS.
    pub fn dns_service_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 64 * self.0, 10)
    }

    /// Names of the slot's network namespace and host-side interfaces,
    /// short enough for the kernel's 15-character interface names.
    pub fn netns(self) -> String {
        format!("kuberay-rs-{}", self.0)
    }

    pub fn host_link(self) -> String {
        format!("krs{}h", self.0)
    }

    pub fn namespace_link(self) -> String {
        format!("krs{}n", self.0)
    }

    pub fn bridge(self, n: u8) -> String {
        format!("krb{n}")
    }
}

/// The `kubernetes` Service's ClusterIP without real nodes.
pub fn simulated_kubernetes_service_ip() -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(cidr: &str, ip: Ipv4Addr) -> bool {
        let (net, len) = cidr.split_once('/').unwrap();
        let net: Ipv4Addr = net.parse().unwrap();
        let len: u32 = len.parse().unwrap();
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        u32::from(net) & mask == u32::from(ip) & mask
    }

    #[test]
    fn slots_never_overlap_and_stay_in_the_benchmarking_range() {
        for s in 0..SLOTS {
            let slot = Slot(s);
            for n in 0..MAX_REAL_NODES {
                let ip = slot.node_ip(n);
                assert!(contains(&slot.pod_cidr(), ip));
                assert!(contains(&slot.node_pod_cidr(n), ip));
                assert!(contains(LOCAL_RANGE, ip));
                assert!(!contains(SIMULATED_POD_CIDR, ip));
                for other in (0..SLOTS).filter(|&o| o != s) {
                    assert!(!contains(&Slot(other).pod_cidr(), ip));
                }
            }
            assert!(contains(&slot.service_cidr(), slot.kubernetes_service_ip()));
            assert!(contains(&slot.service_cidr(), slot.dns_service_ip()));
            assert!(contains(LOCAL_RANGE, slot.host_ip()));
            assert!(!contains(&slot.pod_cidr(), slot.host_ip()));
            assert!(slot.netns().len() <= 15 && slot.host_link().len() <= 15);
        }
        assert!(contains(LOCAL_RANGE, simulated_kubernetes_service_ip()));
        assert!(contains(
            LOCAL_RANGE,
            simulated_node_ip(999).parse().unwrap()
        ));
        assert!(!contains(
            SIMULATED_POD_CIDR,
            simulated_node_ip(999).parse().unwrap()
        ));
    }
}
