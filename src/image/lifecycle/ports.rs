//! `-p [IP:]HOST:CONTAINER[/tcp|udp]` and `-P`: the mappings, and the user-space forwarder
//! that serves them. A container on the private network has a network namespace of its own;
//! pasta (Debian package `passt`) joins it, gives it an interface with the host's address
//! and route (outbound access) and listens on the host ports, forwarding each connection to
//! the container's port. No bridge, no iptables: the same works rootless later.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// The host address to listen on; None: all addresses.
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub proto: String,
}

impl PortMap {
    /// docker's PORTS column form: `127.0.0.1:8080->80/tcp`.
    pub fn shown(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip.as_deref().unwrap_or("0.0.0.0"),
            self.host_port,
            self.container_port,
            self.proto
        )
    }
}

fn port(s: &str, what: &str, spec: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("-p {spec}: bad {what} port {s:?}")),
    }
}

/// Parses one `-p` value.
pub fn parse(spec: &str) -> Result<PortMap, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p @ ("tcp" | "udp"))) => (r, p),
        Some((_, p)) => return Err(format!("-p {spec}: protocol {p:?}: tcp or udp")),
        None => (spec, "tcp"),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c, h] => (None, *h, *c),
        [c, h, ip] => (Some(ip.trim_matches(['[', ']'])), *h, *c),
        _ => {
            return Err(format!(
                "-p {spec}: expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"
            ));
        }
    };
    if let Some(ip) = ip
        && !ip.is_empty()
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!("-p {spec}: {ip:?} is not an IP address"));
    }
    Ok(PortMap {
        host_ip: ip.filter(|i| !i.is_empty()).map(str::to_string),
        host_port: port(host, "host", spec)?,
        container_port: port(ctr, "container", spec)?,
        proto: proto.to_string(),
    })
}

/// `-P`: each port the image exposes (`ExposedPorts` keys like `80/tcp`), on a free host
/// port of 127.0.0.1's kernel choosing.
pub fn publish_all(exposed: &[String]) -> Result<Vec<PortMap>, String> {
    let mut out = Vec::new();
    for e in exposed {
        let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let container_port = port(p, "exposed", e)?;
        let host_port = free_port(proto)?;
        out.push(PortMap {
            host_ip: None,
            host_port,
            container_port,
            proto: proto.to_string(),
        });
    }
    Ok(out)
}

fn free_port(proto: &str) -> Result<u16, String> {
    let addr = "0.0.0.0:0";
    let p = if proto == "udp" {
        std::net::UdpSocket::bind(addr).and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind(addr).and_then(|s| s.local_addr())
    };
    p.map(|a| a.port())
        .map_err(|e| format!("no free {proto} port: {e}"))
}

/// Where pasta is, if installed.
pub fn find_pasta() -> Result<PathBuf, String> {
    ["/usr/bin/pasta", "/usr/local/bin/pasta", "/bin/pasta"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            "port publishing needs pasta: apt-get install passt (scripts/setup.sh does)".into()
        })
}

/// pasta's arguments for `maps`: `-t`/`-u` lists, nothing forwarded the other way.
fn pasta_args(maps: &[PortMap]) -> Vec<String> {
    let mut args = Vec::new();
    for proto in ["tcp", "udp"] {
        let list: Vec<String> = maps
            .iter()
            .filter(|m| m.proto == proto)
            .map(|m| match &m.host_ip {
                Some(ip) => format!("{ip}/{}:{}", m.host_port, m.container_port),
                None => format!("{}:{}", m.host_port, m.container_port),
            })
            .collect();
        args.push(if proto == "tcp" { "-t" } else { "-u" }.to_string());
        args.push(if list.is_empty() {
            "none".into()
        } else {
            list.join(",")
        });
    }
    args.extend(["-T", "none", "-U", "none"].map(String::from));
    args
}

/// Starts pasta on the network namespace at `netns`: it configures the interface, binds
/// the host ports and only then goes to the background, so its exit status says whether
/// every port could be had. Returns pasta's PID. pasta quits by itself when the namespace
/// is deleted.
pub fn start_forwarder(netns: &Path, maps: &[PortMap], dir: &Path) -> Result<i32, String> {
    let pasta = find_pasta()?;
    let log = dir.join("forwarder.log");
    let pid_file = dir.join("forwarder.pid");
    let _ = std::fs::remove_file(&pid_file);
    let out = Command::new(&pasta)
        // As root pasta would drop to nobody before joining the namespace, and fail.
        .args(["--config-net", "--quiet", "--runas", "0"])
        .args(pasta_args(maps))
        .arg("--pid")
        .arg(&pid_file)
        .arg("--log-file")
        .arg(&log)
        .arg("--netns")
        .arg(netns)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", pasta.display()))?;
    if !out.status.success() {
        let why = std::fs::read_to_string(&log).unwrap_or_default()
            + &String::from_utf8_lossy(&out.stderr);
        let line = why
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("Failed to send"))
            .unwrap_or("pasta failed")
            .trim()
            .to_string();
        return Err(format!(
            "cannot publish {}: {line}",
            maps.iter()
                .map(PortMap::shown)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| "pasta started but wrote no PID file".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        let m = parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (
                m.host_ip.as_deref(),
                m.host_port,
                m.container_port,
                m.proto.as_str()
            ),
            (Some("127.0.0.1"), 8080, 80, "udp")
        );
        assert_eq!(m.shown(), "127.0.0.1:8080->80/udp");
        let m = parse("8080:80").unwrap();
        assert_eq!((m.host_ip, m.proto.as_str()), (None, "tcp"));
        assert!(
            parse("80")
                .unwrap_err()
                .contains("HOST_PORT:CONTAINER_PORT")
        );
        assert!(parse("x:80").unwrap_err().contains("bad host port"));
        assert!(parse("1:0").unwrap_err().contains("bad container port"));
        assert!(parse("1:2/sctp").unwrap_err().contains("tcp or udp"));
        assert!(parse("nope:1:2").unwrap_err().contains("not an IP"));
        assert_eq!(
            pasta_args(&[parse("127.0.0.1:8080:80").unwrap()]),
            [
                "-t",
                "127.0.0.1/8080:80",
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none"
            ]
        );
    }
}
