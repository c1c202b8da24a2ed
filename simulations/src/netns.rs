//! Network namespaces for tests that need real separate hosts: a venue LAN (a bridge that
//! carries multicast, so mDNS works between hosts) and a WAN link that can be cut.
//!
//! Everything is created by the test itself with `ip` (iproute2, run as root), named with
//! the test process's id so parallel runs never collide, and deleted on drop. Traffic stays
//! inside these namespaces: no address here is reachable from the machine's real
//! interfaces, and nothing is routed out of them.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Run `ip` with these arguments, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip` (iproute2)")?;
    check(&out, &format!("ip {}", args.join(" ")))
}

fn check(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "`{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A unique short name: interface names are limited to 15 characters.
fn unique(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("tl{}{}{tag}", std::process::id() % 100_000, n)
}

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create a namespace with its loopback up (and multicast-capable).
    pub fn create(tag: &str) -> Result<Netns> {
        let name = unique(tag);
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `ip` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Run `f` on a new thread that has entered this namespace; threads it starts (such as
    /// an mDNS daemon's) stay in the namespace after `f` returns, and see only its
    /// interfaces.
    pub fn run_in<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        Ok(taplink_sync_io::netns::run_in_netns(&self.name, f)?)
    }

    /// An HTTP request made from inside the namespace (see [`crate::mesh::http`]).
    pub fn http(
        &self,
        addr: impl Into<crate::mesh::Target>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        self.http_with(addr, method, path, &[], body)
    }

    /// [`Netns::http`] with extra request headers (name, value).
    pub fn http_with(
        &self,
        addr: impl Into<crate::mesh::Target>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_vec());
        let addr = addr.into();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.run_in(move || {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(crate::mesh::http_with(
                    addr, &method, &path, &headers, &body,
                ))
        })?
    }

    /// Run a shell command line inside the namespace and return its stdout.
    pub fn sh(&self, line: &str) -> Result<String> {
        let out = self
            .command("sh")
            .args(["-c", line])
            .stdin(Stdio::null())
            .output()?;
        check(&out, line)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace also deletes the veth ends inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Give `ns`'s interface `dev` an address and bring it up with multicast, routing
/// multicast (mDNS) out of it.
fn configure(
    ns: &Netns,
    dev: &str,
    addr: Ipv4Addr,
    prefix: u8,
    multicast_route: bool,
) -> Result<()> {
    ns.ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", dev])?;
    ns.ip(&["link", "set", dev, "multicast", "on", "up"])?;
    if multicast_route {
        ns.ip(&["route", "add", "224.0.0.0/4", "dev", dev])?;
    }
    Ok(())
}

/// A venue LAN: a bridge in a "switch" namespace and hosts attached to it, each host in its
/// own namespace with an `eth0` on `10.77.<lan>.0/24`.
#[derive(Debug)]
pub struct Lan {
    // Hosts first: they are dropped (deleted) before the switch.
    hosts: Vec<Netns>,
    switch: Netns,
    subnet: u8,
}

/// The interface name every LAN host sees.
pub const LAN_DEV: &str = "eth0";

impl Lan {
    /// A new, empty LAN numbered `subnet` (its hosts get `10.77.<subnet>.<n>`).
    pub fn new(subnet: u8) -> Result<Lan> {
        let switch = Netns::create("sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        Ok(Lan {
            hosts: Vec::new(),
            switch,
            subnet,
        })
    }

    /// Attach a new host namespace; returns its index and address.
    pub fn add_host(&mut self, tag: &str) -> Result<(usize, Ipv4Addr)> {
        let host = Netns::create(tag)?;
        let index = self.hosts.len();
        let addr = Ipv4Addr::new(10, 77, self.subnet, u8::try_from(index + 10)?);
        let port = format!("p{index}");
        // Create the pair in the switch, then move one end into the host as eth0.
        self.switch
            .ip(&["link", "add", &port, "type", "veth", "peer", "name", "tmp0"])?;
        self.switch
            .ip(&["link", "set", "tmp0", "netns", host.name()])?;
        host.ip(&["link", "set", "tmp0", "name", LAN_DEV])?;
        self.switch.ip(&["link", "set", &port, "master", "br0"])?;
        self.switch.ip(&["link", "set", &port, "up"])?;
        configure(&host, LAN_DEV, addr, 24, true)?;
        self.hosts.push(host);
        Ok((index, addr))
    }

    /// The host namespace at `index`.
    pub fn host(&self, index: usize) -> &Netns {
        &self.hosts[index]
    }
}

/// A point-to-point WAN link between two namespaces (`wan0` on each side,
/// `10.78.<n>.1` and `.2`), which can be cut and healed.
#[derive(Debug)]
pub struct WanLink {
    a_ns: String,
    /// Address of side A.
    pub a: Ipv4Addr,
    /// Address of side B.
    pub b: Ipv4Addr,
}

impl WanLink {
    /// Connect `a` and `b`.
    pub fn connect(a: &Netns, b: &Netns, n: u8) -> Result<WanLink> {
        a.ip(&[
            "link", "add", "wan0", "type", "veth", "peer", "name", "wanb",
        ])?;
        a.ip(&["link", "set", "wanb", "netns", b.name()])?;
        b.ip(&["link", "set", "wanb", "name", "wan0"])?;
        let (addr_a, addr_b) = (Ipv4Addr::new(10, 78, n, 1), Ipv4Addr::new(10, 78, n, 2));
        configure(a, "wan0", addr_a, 30, false)?;
        configure(b, "wan0", addr_b, 30, false)?;
        Ok(WanLink {
            a_ns: a.name().to_owned(),
            a: addr_a,
            b: addr_b,
        })
    }

    /// Cut the link (both directions drop everything).
    pub fn cut(&self) -> Result<()> {
        ip(&["-n", &self.a_ns, "link", "set", "wan0", "down"])
    }

    /// Restore the link.
    pub fn heal(&self) -> Result<()> {
        ip(&["-n", &self.a_ns, "link", "set", "wan0", "up"])
    }
}
