//! A kube-proxy stand-in: nftables DNAT of VIP:port to a backend on the node.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::daemon::path_string;
use super::error::LabError;
use super::topology::Host;

/// The nftables table the stand-in owns on a host.
pub const SERVICE_TABLE: &str = "flb_svc";

impl Host {
    /// DNATs TCP traffic for `vip:port` (arriving on the LAN or sent locally) to
    /// `backend_ip:backend_port`, as kube-proxy would for a LoadBalancer Service. Can be called
    /// repeatedly for several services. `vip` and `backend_ip` must be of the same family.
    pub fn install_service_dnat(
        &self,
        vip: IpAddr,
        port: u16,
        backend_ip: IpAddr,
        backend_port: u16,
    ) -> Result<(), LabError> {
        let (family, target) = match (vip, backend_ip) {
            (IpAddr::V4(_), IpAddr::V4(b)) => ("ip", format!("{b}:{backend_port}")),
            (IpAddr::V6(_), IpAddr::V6(b)) => ("ip6", format!("[{b}]:{backend_port}")),
            _ => {
                return Err(LabError::Invalid(format!(
                    "VIP {vip} and backend {backend_ip} are of different families"
                )));
            }
        };
        let t = SERVICE_TABLE;
        let mut rules = String::new();
        let _ = writeln!(rules, "table inet {t} {{}}");
        let _ = writeln!(
            rules,
            "add chain inet {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}"
        );
        let _ = writeln!(
            rules,
            "add chain inet {t} output {{ type nat hook output priority -100; policy accept; }}"
        );
        for chain in ["prerouting", "output"] {
            let _ = writeln!(
                rules,
                "add rule inet {t} {chain} {family} daddr {vip} tcp dport {port} dnat {family} to {target}"
            );
        }
        let file = self.unique_path("service.nft");
        std::fs::write(&file, rules)
            .map_err(|e| LabError::io(format!("writing {}", file.display()), e))?;
        let file = path_string(&file)?;
        self.exec_ok(&["nft", "-f", &file]).map(drop)
    }

    /// Removes every rule installed by [`Host::install_service_dnat`].
    pub fn remove_service_dnat(&self) -> Result<(), LabError> {
        // `destroy` would be idempotent but needs nftables >= 1.0.8: declare, then delete.
        let t = SERVICE_TABLE;
        let file = self.unique_path("service-remove.nft");
        std::fs::write(
            &file,
            format!("table inet {t} {{}}\ndelete table inet {t}\n"),
        )
        .map_err(|e| LabError::io(format!("writing {}", file.display()), e))?;
        let file = path_string(&file)?;
        self.exec_ok(&["nft", "-f", &file]).map(drop)
    }
}
