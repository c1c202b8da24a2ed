//! Interoperability of the hub's mDNS advertisement with Avahi, the mDNS stack of Debian
//! (and of most Linux kiosks): `avahi-browse -rt _taplink._tcp` on another host of the venue
//! LAN must list the hub with its port, address and TXT records.
//!
//! The LAN is a bridge between two network namespaces this test creates: the hub's
//! advertiser (mdns-sd, its daemon started from a thread inside the hub's namespace) on
//! `eth0` in one, a private `dbus-daemon`, `avahi-daemon` and `avahi-browse` in the other.
//! Nothing touches the machine's real interfaces or its own D-Bus or Avahi, if it has any:
//! the bus is a unix socket in the test's temporary directory, and avahi-daemon runs under
//! `ip netns exec` (a mount namespace of its own) with a private tmpfs on `/run`, where its
//! fixed pid file (`/run/avahi-daemon/pid`) lives, so parallel runs cannot collide.
//!
//! Needs root and the Debian packages `avahi-daemon`, `avahi-utils` and `dbus`
//! (`scripts/test.sh` installs them); the test fails, rather than skips, without them.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use taplink_certs::Fingerprint;
use taplink_edge_hub::mdns::{API_VERSION, Advertisement, Advertiser};
use taplink_simulations::netns::{LAN_DEV, Lan, Netns};
use taplink_sync_proto::ids::{HubId, VenueId};
use tokio::time::Instant;

/// The bound on each wait: for a daemon to start, an address to be usable, Avahi to list
/// the hubs or to forget them.
const BOUND: Duration = Duration::from_secs(30);
/// The bound on one `avahi-browse -t` run (it normally ends within a fraction of a second).
const BROWSE_LIMIT: Duration = Duration::from_secs(10);
/// The service type as Avahi's tools name it.
const AVAHI_TYPE: &str = "_taplink._tcp";

/// The absolute path of `program`, searched in `PATH` and in the sbin directories (where
/// Debian puts avahi-daemon, and which a non-login root shell may lack).
fn tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` not found: install the Debian package `{package}` \
                 (scripts/test.sh installs avahi-daemon, avahi-utils and dbus when missing)"
            )
        })
}

/// Child processes, killed and reaped on drop (the test's failures included), last
/// started first.
#[derive(Default)]
struct Children(Vec<(&'static str, Child)>);

impl Children {
    fn push(&mut self, name: &'static str, child: Child) {
        self.0.push((name, child));
    }

    /// Fail if one of them has exited; `logs` says where to look.
    fn assert_running(&mut self, logs: &dyn Fn() -> String) {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited ({status}):\n{}", logs());
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.0.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A D-Bus system bus of our own: listens only on `socket`, allows everything (only this
/// test's avahi-daemon and avahi-browse connect to it), activates nothing.
fn bus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

/// avahi-daemon as a kiosk would run it, confined to the LAN interface; it publishes
/// nothing of its own (no host name probing, so it is ready sooner) and only browses.
fn avahi_config() -> String {
    format!(
        "[server]\nhost-name=taplink-avahi-test\nuse-ipv4=yes\nuse-ipv6=yes\n\
         allow-interfaces={LAN_DEV}\nenable-dbus=yes\n\
         [wide-area]\nenable-wide-area=no\n\
         [publish]\ndisable-publishing=yes\n"
    )
}

/// One resolved service line of `avahi-browse --parsable`:
/// `=;iface;protocol;name;type;domain;host;address;port;"txt" "txt"…`.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    interface: String,
    protocol: String,
    name: String,
    service_type: String,
    domain: String,
    host: String,
    address: String,
    port: u16,
    txt: BTreeMap<String, String>,
}

impl Resolved {
    fn parse(line: &str) -> Option<Resolved> {
        let fields: Vec<&str> = line.splitn(10, ';').collect();
        let [
            "=",
            interface,
            protocol,
            name,
            service_type,
            domain,
            host,
            address,
            port,
            txt,
        ] = fields[..]
        else {
            return None;
        };
        Some(Resolved {
            interface: interface.to_owned(),
            protocol: protocol.to_owned(),
            name: name.to_owned(),
            service_type: service_type.to_owned(),
            domain: domain.to_owned(),
            host: host.to_owned(),
            address: address.to_owned(),
            port: port.parse().ok()?,
            txt: parse_txt(txt)?,
        })
    }
}

/// Avahi's rendering of a TXT record set: each string in double quotes, separated by
/// spaces, with `"`, `\` and unprintable bytes escaped (`\"`, `\\`, `\DDD` in decimal).
fn parse_txt(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut bytes = text.bytes();
    loop {
        match bytes.next() {
            None => return Some(out),
            Some(b' ') => continue,
            Some(b'"') => {}
            Some(_) => return None,
        }
        let mut string = Vec::new();
        loop {
            match bytes.next()? {
                b'"' => break,
                b'\\' => {
                    let first = bytes.next()?;
                    if first.is_ascii_digit() {
                        let digits = [first, bytes.next()?, bytes.next()?];
                        string.push(std::str::from_utf8(&digits).ok()?.parse().ok()?);
                    } else {
                        string.push(first);
                    }
                }
                byte => string.push(byte),
            }
        }
        let string = String::from_utf8(string).ok()?;
        let (key, value) = string.split_once('=').unwrap_or((&string, ""));
        out.insert(key.to_owned(), value.to_owned());
    }
}

/// Run `cmd` to completion within `limit` (killed after it); returns whether it exited
/// successfully, its stdout and its stderr.
fn run_bounded(mut cmd: Command, limit: Duration, dir: &Path) -> (bool, String, String) {
    let (out_path, err_path) = (dir.join("browse.out"), dir.join("browse.err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + limit;
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    (success, read(&out_path), read(&err_path))
}

/// What one `avahi-browse` run printed.
struct Browse {
    success: bool,
    resolved: Vec<Resolved>,
    stdout: String,
    stderr: String,
}

impl Browse {
    /// The resolved entries of the service instance `name`.
    fn of(&self, name: &str) -> Vec<&Resolved> {
        self.resolved.iter().filter(|r| r.name == name).collect()
    }

    /// Whether `name` is listed, resolved, over each of `protocols`.
    fn lists(&self, name: &str, protocols: &[&str]) -> bool {
        let of = self.of(name);
        self.success
            && protocols
                .iter()
                .all(|p| of.iter().any(|r| r.protocol == *p))
    }

    fn report(&self) -> String {
        format!(
            "avahi-browse success {}, stdout:\n{}\n--- avahi-browse stderr:\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Run `avahi-browse` in `ns`: resolve, terminate once the list is complete, parsable
/// output, no service type database lookup (the type is printed as it is).
fn browse(ns: &Netns, browser: &Path, bus: &str, dir: &Path) -> Browse {
    let mut cmd = ns.command(&browser.display().to_string());
    cmd.args(["-rtpk", AVAHI_TYPE])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus);
    let (success, stdout, stderr) = run_bounded(cmd, BROWSE_LIMIT, dir);
    let resolved = stdout.lines().filter_map(Resolved::parse).collect();
    Browse {
        success,
        resolved,
        stdout,
        stderr,
    }
}

/// The IPv6 link-local address of `ns`'s LAN interface, once duplicate address detection
/// has finished with it (a tentative address is not used, by mdns-sd or by Avahi).
fn link_local(ns: &Netns) -> Ipv6Addr {
    let end = Instant::now() + BOUND;
    loop {
        let out = ns
            .sh(&format!(
                "ip -o -6 addr show dev {LAN_DEV} scope link -tentative"
            ))
            .unwrap();
        let addr = out
            .split_whitespace()
            .skip_while(|word| *word != "inet6")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next()?.parse().ok());
        if let Some(addr) = addr {
            return addr;
        }
        assert!(
            Instant::now() < end,
            "no IPv6 link-local address on {LAN_DEV} in {} within {BOUND:?}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Hubs on a venue LAN are listed, resolved, by Avahi on another host of that LAN, with
/// exactly the TXT records, port and addresses they advertise: one advertising the address
/// it listens on (IPv4), one listening on every address and so advertising its interface's
/// addresses (IPv4, and the IPv6 link-local one). After the hubs' shutdown (goodbye
/// packets) Avahi no longer lists them.
#[test]
fn avahi_browse_on_the_lan_lists_hubs_with_their_txt_records() {
    let dbus_daemon = tool("dbus-daemon", "dbus");
    let avahi_daemon = tool("avahi-daemon", "avahi-daemon");
    let avahi_browse = tool("avahi-browse", "avahi-utils");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut lan = Lan::new(4).unwrap();
    let (hub_i, hub_ip) = lan.add_host("hub").unwrap();
    let (avahi_i, _) = lan.add_host("av").unwrap();
    let (hub_ns, avahi_ns) = (lan.host(hub_i), lan.host(avahi_i));
    // Declared after the LAN, so dropped (killed) before its namespaces are deleted.
    let mut children = Children::default();

    let socket = dir.join("system_bus_socket");
    let bus = format!("unix:path={}", socket.display());
    std::fs::write(dir.join("bus.conf"), bus_config(&socket)).unwrap();
    std::fs::write(dir.join("avahi-daemon.conf"), avahi_config()).unwrap();
    let logs = || {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        format!(
            "--- dbus-daemon stderr:\n{}\n--- avahi-daemon stderr:\n{}",
            read("dbus.err"),
            read("avahi.err")
        )
    };

    let child = avahi_ns
        .command(&dbus_daemon.display().to_string())
        .arg(format!("--config-file={}", dir.join("bus.conf").display()))
        .args(["--nofork", "--nopidfile"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("dbus.err")).unwrap())
        .spawn()
        .expect("cannot start dbus-daemon");
    children.push("dbus-daemon", child);
    let end = Instant::now() + BOUND;
    while !socket.exists() {
        children.assert_running(&logs);
        assert!(
            Instant::now() < end,
            "dbus-daemon did not listen within {BOUND:?}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // `ip netns exec` gives the shell a mount namespace of its own, so the tmpfs on /run is
    // seen by this avahi-daemon only.
    let child = avahi_ns
        .command("sh")
        .args([
            "-c",
            r#"mount -t tmpfs taplink-avahi-run /run && exec "$0" -f "$1" --no-drop-root --no-chroot --no-rlimits --no-proc-title"#,
        ])
        .arg(&avahi_daemon)
        .arg(dir.join("avahi-daemon.conf"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("avahi.err")).unwrap())
        .spawn()
        .expect("cannot start avahi-daemon");
    children.push("avahi-daemon", child);

    // Both hosts' IPv6 link-local addresses are usable before the hubs start, so the second
    // hub advertises its IPv6 address from the start.
    let hub_ip6 = link_local(hub_ns);
    link_local(avahi_ns);
    let ad = |addr| Advertisement {
        hub: HubId::random(),
        venue: VenueId::random(),
        port: 48_581,
        fingerprint: Fingerprint::of(HubId::random().to_string().as_bytes()),
        interface: Some(LAN_DEV.into()),
        addr,
    };
    // (what is advertised, the protocols Avahi must list it on, the addresses it may show)
    let hubs = [
        (
            ad(Some(IpAddr::V4(hub_ip))),
            vec!["IPv4"],
            vec![IpAddr::V4(hub_ip)],
        ),
        (
            ad(None),
            vec!["IPv4", "IPv6"],
            vec![IpAddr::V4(hub_ip), IpAddr::V6(hub_ip6)],
        ),
    ];
    let advertisers: Vec<Advertiser> = hubs
        .iter()
        .map(|(ad, _, _)| {
            let ad = ad.clone();
            hub_ns
                .run_in(move || Advertiser::start(&ad))
                .unwrap()
                .unwrap()
        })
        .collect();

    // avahi-browse fails until avahi-daemon is on the bus, and lists what its daemon has
    // seen so far: look again until every hub is there, resolved.
    let end = Instant::now() + BOUND;
    let mut attempts = 0;
    let listed = loop {
        children.assert_running(&logs);
        attempts += 1;
        let b = browse(avahi_ns, &avahi_browse, &bus, dir);
        if hubs
            .iter()
            .all(|(ad, protocols, _)| b.lists(&ad.instance_name(), protocols))
        {
            break b;
        }
        assert!(
            Instant::now() < end,
            "avahi-browse did not list every hub within {BOUND:?} ({attempts} runs); \
             expected {:?}; last run: {}\n{}",
            hubs.iter()
                .map(|(ad, protocols, _)| (ad.instance_name(), protocols))
                .collect::<Vec<_>>(),
            b.report(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    for (ad, _, addresses) in &hubs {
        let name = ad.instance_name();
        let expected_txt: BTreeMap<String, String> = [
            ("venue", ad.venue.to_string()),
            ("hub", ad.hub.to_string()),
            ("api", API_VERSION.to_owned()),
            ("fp", ad.fingerprint.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert!(expected_txt["fp"].starts_with("sha256:"));
        for r in listed.of(&name) {
            let context = || format!("{r:#?}\n{}", listed.report());
            assert_eq!(r.interface, LAN_DEV, "{}", context());
            assert_eq!(r.service_type, AVAHI_TYPE, "{}", context());
            assert_eq!(r.domain, "local", "{}", context());
            assert_eq!(r.host, format!("{name}.local"), "{}", context());
            let address: IpAddr = r.address.parse().unwrap();
            assert!(addresses.contains(&address), "{addresses:?}: {}", context());
            assert_eq!(r.port, ad.port, "{}", context());
            assert_eq!(r.txt, expected_txt, "{}", context());
        }
        // Over IPv4 a kiosk is given the address it can reach.
        assert!(
            listed
                .of(&name)
                .iter()
                .any(|r| r.protocol == "IPv4" && r.address == hub_ip.to_string()),
            "{name} not resolved to {hub_ip} over IPv4: {}",
            listed.report()
        );
    }

    // The goodbye packets of shutdown reach Avahi, which drops the hubs from its cache.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for advertiser in advertisers {
        runtime.block_on(advertiser.shutdown());
    }
    let end = Instant::now() + BOUND;
    loop {
        children.assert_running(&logs);
        let b = browse(avahi_ns, &avahi_browse, &bus, dir);
        if b.success
            && hubs
                .iter()
                .all(|(ad, _, _)| b.of(&ad.instance_name()).is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "avahi-browse still lists a hub {BOUND:?} after the hubs' goodbyes; last run: {}\n{}",
            b.report(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The parsable output's escapes are undone, so TXT values compare exactly.
#[test]
fn avahi_txt_rendering_is_parsed() {
    let line = r#"=;eth0;IPv4;taplink-hub-x;_taplink._tcp;local;taplink-hub-x.local;10.77.4.10;8580;"fp=sha256:00" "a=b\"c\\d\059" "flag""#;
    let r = Resolved::parse(line).unwrap();
    assert_eq!(r.port, 8580);
    assert_eq!(r.address, "10.77.4.10");
    assert_eq!(r.txt["fp"], "sha256:00");
    assert_eq!(r.txt["a"], "b\"c\\d;");
    assert_eq!(r.txt["flag"], "");
    assert_eq!(
        Resolved::parse("+;eth0;IPv4;taplink-hub-x;_taplink._tcp;local"),
        None
    );
}
