//! Network namespaces for the tests that need more than loopback (direct server return: a
//! VIP on several hosts, a client on another), built with iproute2 and removed on drop.
//!
//! A [`Lan`] is one bridge, in a namespace of its own, with a host namespace per member on a
//! veth into it, all in one /24. Nothing touches the machine's own namespace: the bridge
//! lives in the lab too, and only the lab's addresses are ever traffic targets.
//!
//! ```no_run
//! use qlb_testkit::netns::Lan;
//!
//! let lan = Lan::new("example", "10.77.0")?; // hosts get 10.77.0.<n>/24
//! let client = lan.host("client", 10)?;
//! let server = lan.host("server", 11)?;
//! // Processes run in a host with `ip netns exec`.
//! let status = client.command("ping").args(["-c1", "-W2", &server.ip().to_string()]).status()?;
//! assert!(status.success());
//! # Ok::<(), qlb_testkit::BoxError>(())
//! ```

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::TestResult;
use crate::peers::missing;

/// Namespaces made by this process so far: part of every name, so that parallel tests and
/// test binaries never collide.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// Whether network namespaces can be made here (root, iproute2): when not, fails in CI and
/// elsewhere says loudly that the test skipped ([`missing`]).
pub fn available() -> bool {
    // Numbered as namespaces are: tests of one process probe in parallel.
    let serial = MADE.fetch_add(1, Ordering::Relaxed);
    let probe = format!("qlbt-{}-{serial}-probe", std::process::id());
    let made = run_ip(&["netns", "add", &probe]).is_ok();
    if made {
        let _ = run_ip(&["netns", "del", &probe]);
    }
    made || missing(
        "network namespaces",
        "run as root, with iproute2: apt-get install iproute2",
    )
}

/// One network namespace, deleted on drop (with every interface in it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace whose name ends in `tag`, with its loopback up.
    pub fn new(tag: &str) -> TestResult<Self> {
        let serial = MADE.fetch_add(1, Ordering::Relaxed);
        let name = format!("qlbt-{}-{serial}-{tag}", std::process::id());
        run_ip(&["netns", "add", &name])?;
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to run in the namespace (`ip netns exec`, which then executes it: the
    /// child's process ID is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// `command` (program, arguments, environment and directory) to run in the namespace
    /// instead: for commands the test kit or a test builds for loopback.
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = self.command(command.get_program());
        wrapped.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Runs `ip args` in the namespace; fails with its stderr.
    pub fn ip(&self, args: &[&str]) -> TestResult<Output> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Moves the calling thread into the namespace (setns), for what must run there
    /// in-process: a `BPF_PROG_TEST_RUN` whose route lookups see the namespace's routes. The
    /// thread stays there; use a thread of its own.
    pub fn enter(&self) -> TestResult {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }

    /// The index of the namespace's interface `name`.
    pub fn ifindex(&self, name: &str) -> TestResult<u32> {
        let output = self.ip(&["-o", "link", "show", "dev", name])?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .ok_or_else(|| format!("no index for {name} in {text:?}").into())
    }

    /// The XDP flag `ip link` shows for the namespace's interface `name`: `xdp` (native),
    /// `xdpgeneric`, or `None` when no program is attached.
    pub fn xdp_attached(&self, name: &str) -> TestResult<Option<String>> {
        let output = self.ip(&["link", "show", "dev", name])?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .find(|word| word.starts_with("xdp"))
            .map(str::to_owned))
    }

    /// Sets a sysctl in the namespace (`key` as `sysctl` names it).
    pub fn sysctl(&self, key: &str, value: &str) -> TestResult {
        let output = self
            .command("sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .stderr(Stdio::piped())
            .output()?;
        match output.status.success() {
            true => Ok(()),
            false => Err(format!(
                "sysctl {key}={value} in {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            )
            .into()),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_ip(&["netns", "del", &self.name]);
    }
}

/// A bridge in a namespace of its own, and member hosts on it.
#[derive(Debug)]
pub struct Lan {
    /// The first three octets of the /24.
    prefix: [u8; 3],
    tag: String,
    bridge: Netns,
}

/// A member of a [`Lan`]: a namespace with `eth0` on the bridge.
#[derive(Debug)]
pub struct Host {
    netns: Netns,
    ip: Ipv4Addr,
}

impl Lan {
    /// A bridge for hosts in `prefix.0/24` (`prefix` like `"10.77.0"`).
    pub fn new(tag: &str, prefix: &str) -> TestResult<Self> {
        let octets: Vec<u8> = prefix
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let prefix: [u8; 3] = octets
            .try_into()
            .map_err(|_| format!("{prefix}: three octets"))?;
        let bridge = Netns::new(&format!("{tag}-br"))?;
        bridge.ip(&["link", "add", "br0", "type", "bridge"])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            prefix,
            tag: tag.to_owned(),
            bridge,
        })
    }

    /// A new host `name` at `.last` on the bridge, with `eth0` up and reverse-path filtering
    /// off (direct server return sends from an address the client routes elsewhere).
    pub fn host(&self, name: &str, last: u8) -> TestResult<Host> {
        let [a, b, c] = self.prefix;
        let ip = Ipv4Addr::new(a, b, c, last);
        let netns = Netns::new(&format!("{}-{name}", self.tag))?;
        // The bridge end is named after the host's address: unique on this bridge, and short
        // enough for an interface name.
        let port = format!("p{last}");
        self.bridge.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns.name,
        ])?;
        self.bridge
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        netns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        for key in [
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
            "net.ipv4.conf.eth0.rp_filter",
        ] {
            netns.sysctl(key, "0")?;
        }
        Ok(Host { netns, ip })
    }
}

impl Host {
    /// The host's address on the bridge.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.ip)
    }

    /// The host's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `program` to run on the host ([`Netns::command`]).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.netns.command(program)
    }

    /// `command` to run on the host instead ([`Netns::wrap`]).
    pub fn wrap(&self, command: &Command) -> Command {
        self.netns.wrap(command)
    }

    /// Adds `ip/32` to the host's loopback: a VIP it receives on or sends from.
    pub fn add_local(&self, ip: Ipv4Addr) -> TestResult {
        self.netns
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .map(drop)
    }

    /// Routes `ip/32` via `gateway` (another host on the bridge).
    pub fn route_via(&self, ip: Ipv4Addr, gateway: IpAddr) -> TestResult {
        self.netns
            .ip(&[
                "route",
                "add",
                &format!("{ip}/32"),
                "via",
                &gateway.to_string(),
            ])
            .map(drop)
    }
}

fn run_ip(args: &[&str]) -> TestResult<Output> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    match output.status.success() {
        true => Ok(output),
        false => Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP datagram from one host reaches the other across the bridge, and a VIP routed via
    /// a gateway host arrives there.
    #[test]
    fn hosts_on_a_lan_reach_each_other_and_a_routed_vip() -> TestResult {
        if !available() {
            return Ok(());
        }
        let lan = Lan::new("unit", "10.79.0")?;
        let (client, server) = (lan.host("client", 10)?, lan.host("server", 11)?);
        let vip = Ipv4Addr::new(10, 79, 1, 1);
        server.add_local(vip)?;
        client.route_via(vip, server.ip())?;
        let receive = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                       s.bind(('0.0.0.0',7000));s.settimeout(10);print('ready',flush=True)\n\
                       for _ in range(2):\n    d,a=s.recvfrom(100);print(d.decode(),a[0],flush=True)";
        let mut receiver = server
            .command("python3")
            .args(["-c", receive])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
            receiver.stdout.take().ok_or("stdout")?,
        ));
        assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));
        for target in [server.ip().to_string(), vip.to_string()] {
            let send = format!(
                "import socket\nsocket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'hi',('{target}',7000))"
            );
            assert!(
                client
                    .command("python3")
                    .args(["-c", &send])
                    .status()?
                    .success()
            );
        }
        let got: Vec<String> = lines.take(2).collect::<Result<_, _>>()?;
        assert_eq!(got, ["hi 10.79.0.10", "hi 10.79.0.10"]);
        receiver.wait()?;
        Ok(())
    }
}
